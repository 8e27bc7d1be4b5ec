"""The rehearsal baselines' updates are the authors': one step of DER, DER++ and ER-ACE on a tiny
model equals the step written out by hand from aimagelab/mammoth models/der.py, models/derpp.py
and pclucas14/AML methods/er_ace.py."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from nlbench.training.strategy import Batch

from test_fast_path import _context

SGD = ["train.optimizer=sgd", "train.momentum=0", "train.lr=0.05", "train.augment=false",
       "strategy.buffer_size=30"]  # the last: for the rehearsal strategies


def fill(ctx, scenario, strat, task_index, steps, bs=8, **extras):
    """Put ``steps`` batches of a task into the buffer (with extras computed from each batch)."""
    task = scenario.tasks[task_index]
    for s in range(steps):
        idx = task.train_idx[s * bs:(s + 1) * bs]
        raw, y, t = scenario.train_x[idx], scenario.train_y[idx], torch.full_like(idx, task_index)
        batch = Batch(ctx.prepare(raw, t), y, raw, t)
        strat.buffer.add(batch, **{k: f(batch) for k, f in extras.items()})


def next_batch(ctx, scenario, task_index, start=40, bs=8):
    idx = scenario.tasks[task_index].train_idx[start:start + bs]
    raw, y, t = scenario.train_x[idx], scenario.train_y[idx], torch.full_like(idx, task_index)
    return Batch(ctx.prepare(raw, t), y, raw, t)


def sgd_step(model, loss, lr):
    model.zero_grad(set_to_none=True)
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad


def assert_same_parameters(a, b):
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-6), (p - q).abs().max()


def test_der_and_derpp_steps_are_mammoths(cifar_root):
    """Stream CE, + alpha * MSE(logits of a replay draw, its stored logits), + (DER++) beta * CE of a
    second, independent draw with its stored labels; separate forward passes, one SGD step; the
    stream's logits of that step then stored with its images."""
    for name, alpha, beta in (("der", 0.3, 0.0), ("derpp", 0.1, 0.5)):
        ctx, scenario, strat = _context(cifar_root, name, SGD + ["strategy.minibatch_size=6", "strategy.buffer_size=40"],
                                        graph_capture=False)
        fill(ctx, scenario, strat, 0, 3, logits=lambda b: torch.randn(len(b.y), 10))
        model, batch = copy.deepcopy(strat.model), next_batch(ctx, scenario, 1)
        state = ctx.generator.get_state()
        first, _ = strat.buffer.draw(6)
        second, _ = strat.buffer.draw(6)
        ctx.generator.set_state(state)
        images, labels, logits = strat.buffer["images"], strat.buffer["labels"], strat.buffer["logits"]
        model.train()
        stream_logits = model(batch.x)
        loss = F.cross_entropy(stream_logits, batch.y)
        loss = loss + alpha * F.mse_loss(model(ctx.prepare(images[first[0]], strat.buffer["task_ids"][first[0]])),
                                         logits[first[0]])
        if beta:
            loss = loss + beta * F.cross_entropy(model(ctx.prepare(images[second[0]], strat.buffer["task_ids"][second[0]])),
                                                 labels[second[0]])
        before = stream_logits.detach().clone()
        sgd_step(model, loss, 0.05)
        strat.observe(batch)
        assert_same_parameters(model, strat.model)
        # 24 samples were in the 40 slots: the batch took slots 24..31, with its logits of this step
        assert torch.allclose(strat.buffer["logits"][24:32], before, atol=1e-6)


def test_der_replay_terms_vanish_while_the_buffer_is_empty(cifar_root):
    """mammoth skips them (``if not buffer.is_empty()``): here the masked draws give exactly the
    stream's cross-entropy step."""
    ctx, scenario, strat = _context(cifar_root, "derpp", SGD, graph_capture=False)
    model, batch = copy.deepcopy(strat.model), next_batch(ctx, scenario, 0)
    model.train()
    sgd_step(model, F.cross_entropy(model(batch.x), batch.y), 0.05)
    strat.observe(batch)
    assert_same_parameters(model, strat.model)


def test_er_ace_masks_the_incoming_logits_asymmetrically(cifar_root):
    """Incoming loss over the batch's classes and every class at or above the largest seen so far;
    replay loss over all classes; one step on the sum."""
    ctx, scenario, strat = _context(cifar_root, "er-ace", SGD + ["strategy.replay_batch_size=6"], graph_capture=False)
    fill(ctx, scenario, strat, 0, 3)
    strat.seen_classes[:2] = True                 # task 1's classes {0, 1} were seen
    batch = next_batch(ctx, scenario, 1)          # task 2: classes {2, 3}
    assert set(batch.y.tolist()) == {2, 3}
    model = copy.deepcopy(strat.model)
    state = ctx.generator.get_state()
    pick, valid = strat.buffer.draw(6)
    ctx.generator.set_state(state)
    assert valid.all()
    keep = torch.tensor([False, False] + [True] * 8)  # 2 and 3 present; 3..9 at or above the largest seen (3)
    model.train()
    incoming = F.cross_entropy(model(batch.x).masked_fill(~keep, -1e9), batch.y)
    replay = F.cross_entropy(model(ctx.prepare(strat.buffer["images"][pick[0]], strat.buffer["task_ids"][pick[0]])),
                             strat.buffer["labels"][pick[0]])
    sgd_step(model, incoming + replay, 0.05)
    strat.observe(batch)
    assert_same_parameters(model, strat.model)
    assert strat.seen_classes.tolist() == [True] * 4 + [False] * 6
    # a batch of an old class and a new one: the classes in between stay masked
    assert strat.incoming_mask(torch.tensor([0, 7])).tolist() == [True, False, False, False, False, False, False,
                                                                   True, True, True]


def test_clser_step_and_memories_are_the_authors(cifar_root):
    """NeurAI-Lab/CLS-ER models/clser.py: per replayed sample the memory giving its label the higher
    probability supplies the targets of reg_weight * MSE; cross-entropy over stream + replay in one
    forward pass; one SGD step; then each memory, on its coin flip, moves to alpha * memory +
    (1 - alpha) * model with alpha = min(1 - 1 / (step + 1), its alpha). The stable one is evaluated."""
    ctx, scenario, strat = _context(cifar_root, "clser", SGD + ["strategy.minibatch_size=6", "strategy.reg_weight=0.5",
                                                                "strategy.stable_update_freq=1.0",
                                                                "strategy.plastic_update_freq=0.0"], graph_capture=False)
    fill(ctx, scenario, strat, 0, 3)
    with torch.no_grad():  # two different memories, so the selection matters
        for p in strat.plastic.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model, batch = copy.deepcopy(strat.model), next_batch(ctx, scenario, 1)
    stable, plastic = copy.deepcopy(strat.stable), copy.deepcopy(strat.plastic)
    state = ctx.generator.get_state()
    pick, _ = strat.buffer.draw(6)
    ctx.generator.set_state(state)
    x = ctx.prepare(strat.buffer["images"][pick[0]], strat.buffer["task_ids"][pick[0]])
    y = strat.buffer["labels"][pick[0]]
    with torch.no_grad():
        s_logits, p_logits = stable(x), plastic(x)
    chosen = torch.stack([s_logits[i] if F.softmax(s_logits[i], 0)[y[i]] > F.softmax(p_logits[i], 0)[y[i]]
                          else p_logits[i] for i in range(len(y))])
    model.train()
    loss = 0.5 * F.mse_loss(model(x), chosen) + F.cross_entropy(model(torch.cat([batch.x, x])), torch.cat([batch.y, y]))
    sgd_step(model, loss, 0.05)
    strat.observe(batch)
    assert_same_parameters(model, strat.model)
    assert strat.evaluation_model() is strat.stable
    for kept, before, now in zip(strat.stable.parameters(), stable.parameters(), model.parameters()):
        assert torch.allclose(kept, 0.5 * before + 0.5 * now, atol=1e-6)  # step 1: alpha = min(1 - 1/2, 0.999)
    for kept, before in zip(strat.plastic.parameters(), plastic.parameters()):
        assert torch.equal(kept, before)  # update frequency 0: never moves


def test_agem_projects_only_a_conflicting_gradient(cifar_root):
    """mammoth models/agem.py: g - (g . g_ref / g_ref . g_ref) g_ref where g . g_ref < 0, else g."""
    import sys

    from nlbench.registry import STRATEGIES
    project = sys.modules[STRATEGIES["agem"].obj.__module__].project  # baselines/agem.py, loaded as a plugin
    g_ref = [torch.tensor([1.0, 0.0]), torch.tensor([1.0])]
    conflicting = project([torch.tensor([-1.0, 2.0]), torch.tensor([0.0])], g_ref)  # dot -1, |g_ref|^2 2
    assert [t.tolist() for t in conflicting] == [[-0.5, 2.0], [0.5]]
    assert sum((a * b).sum() for a, b in zip(conflicting, g_ref)) == 0  # no longer increases the memory's loss
    agreeing = project([torch.tensor([1.0, 2.0]), torch.tensor([3.0])], g_ref)
    assert [t.tolist() for t in agreeing] == [[1.0, 2.0], [3.0]]


def test_agem_step_and_memory_are_mammoths(cifar_root):
    ctx, scenario, strat = _context(cifar_root, "agem", SGD + ["strategy.minibatch_size=6"], graph_capture=False)
    strat.after_task(scenario.tasks[0])  # one batch of task 1 enters the memory
    assert int(strat.buffer.seen) == ctx.train["batch_size"] and strat.has_memory
    assert set(strat.buffer["task_ids"][:16].tolist()) == {0}
    model, batch = copy.deepcopy(strat.model), next_batch(ctx, scenario, 1)
    state = ctx.generator.get_state()
    pick, _ = strat.buffer.draw(6)
    ctx.generator.set_state(state)
    model.train()
    params = list(model.parameters())
    g = torch.autograd.grad(F.cross_entropy(model(batch.x), batch.y), params)
    x = ctx.prepare(strat.buffer["images"][pick[0]], strat.buffer["task_ids"][pick[0]])
    g_ref = torch.autograd.grad(F.cross_entropy(model(x), strat.buffer["labels"][pick[0]]), params)
    flat, flat_ref = torch.cat([t.flatten() for t in g]), torch.cat([t.flatten() for t in g_ref])
    dot = flat @ flat_ref
    step = flat - dot / (flat_ref @ flat_ref) * flat_ref if dot < 0 else flat
    with torch.no_grad():
        start = 0
        for p in params:
            p -= 0.05 * step[start:start + p.numel()].view_as(p)
            start += p.numel()
    strat.observe(batch)
    assert_same_parameters(model, strat.model)


def test_lwf_warm_up_and_step_are_mammoths(cifar_root):
    """mammoth models/lwf.py: before a new task only the classifier's rows of the new classes train
    (the rest of the network unchanged); each step: cross-entropy over the classes seen so far plus
    alpha x -mean sum q log p over the previous classes, q and p the old and current softmax raised
    to 1/2 (its smooth(., 2)) and renormalised."""
    ctx, scenario, strat = _context(cifar_root, "lwf", SGD[:-1] + ["strategy.alpha=3.0"], graph_capture=False)
    strat.before_task(scenario.tasks[0])
    before = copy.deepcopy(strat.model)
    strat.before_task(scenario.tasks[1])  # task 2: classes {2, 3}
    for (name, p), q in zip(strat.model.named_parameters(), before.parameters()):
        if not name.startswith("head."):
            assert torch.equal(p, q), name
    head, old_head = strat.model.head.weight, before.head.weight
    assert torch.equal(head[[0, 1, 4, 5, 6, 7, 8, 9]], old_head[[0, 1, 4, 5, 6, 7, 8, 9]])
    assert not torch.equal(head[[2, 3]], old_head[[2, 3]])
    batch = next_batch(ctx, scenario, 1)
    model, old = copy.deepcopy(strat.model), copy.deepcopy(strat.old)
    model.train()
    out = model(batch.x)
    ce = F.cross_entropy(out[:, :4], batch.y)  # classes 0..3 seen; labels 2, 3 keep their positions
    with torch.no_grad():
        q = F.softmax(old(ctx.prepare(batch.raw, batch.task, augment=False))[:, :2], 1).sqrt()
    q = q / q.sum(1, keepdim=True)
    p = F.softmax(out[:, :2], 1).sqrt()
    p = p / p.sum(1, keepdim=True)
    sgd_step(model, ce + 3.0 * -(q * p.log()).sum(1).mean(), 0.05)
    strat.observe(batch)
    assert_same_parameters(model, strat.model)


def test_mir_replays_the_candidates_whose_loss_a_virtual_step_raises_most(cifar_root):
    """optimass/Maximally_Interfered_Retrieval mir.py retrieve_replay_update: subsample candidates of
    earlier tasks, a virtual SGD step with the stream's gradient, scores = loss after - loss before,
    the top replay_batch_size replayed in their own forward pass; one step on the summed gradients."""
    ctx, scenario, strat = _context(cifar_root, "mir", SGD + ["strategy.subsample=12", "strategy.replay_batch_size=4"],
                                    graph_capture=False)
    fill(ctx, scenario, strat, 0, 3)
    model, batch = copy.deepcopy(strat.model), next_batch(ctx, scenario, 1)
    state = ctx.generator.get_state()
    pick, valid = strat.buffer.draw(12, exclude_task=torch.tensor(1))
    ctx.generator.set_state(state)
    assert valid.all()
    x = ctx.prepare(strat.buffer["images"][pick[0]], strat.buffer["task_ids"][pick[0]])
    y = strat.buffer["labels"][pick[0]]
    model.train()
    stream = F.cross_entropy(model(batch.x), batch.y)
    grads = torch.autograd.grad(stream, list(model.parameters()))
    virtual = copy.deepcopy(model)
    with torch.no_grad():
        for p, g in zip(virtual.parameters(), grads):
            p -= 0.05 * g
        pre = F.cross_entropy(model(x), y, reduction="none")
        post = F.cross_entropy(virtual(x), y, reduction="none")
    chosen = (post - pre).argsort(descending=True)[:4]
    replay_grads = torch.autograd.grad(F.cross_entropy(model(x[chosen]), y[chosen]), list(model.parameters()))
    with torch.no_grad():
        for p, g, r in zip(model.parameters(), grads, replay_grads):
            p -= 0.05 * (g + r)
    strat.observe(batch)
    assert_same_parameters(model, strat.model)


def test_gdumb_greedy_sampler_balances_the_classes_as_scr_does(cifar_root):
    """RaptorMai/online-continual-learning agents/gdumb.py greedy_balancing_update, by hand: memory 4,
    labels 0 0 0 | 1 1 1 | 2 | 0. A new class always enters; else a class enters below 4 // classes;
    a full memory drops a random image of the largest class (the first on ties)."""
    ctx, scenario, strat = _context(cifar_root, "gdumb", SGD + ["strategy.buffer_size=4"], graph_capture=False)
    images = scenario.train_x[:8]
    stream = [0, 0, 0, 1, 1, 1, 2, 0]
    kept_counts = []
    for i, label in enumerate(stream):
        strat.offer(images[i], label, 0)
        kept_counts.append(torch.bincount(strat.labels[:strat.count], minlength=3).tolist())
    assert kept_counts == [[1, 0, 0], [2, 0, 0], [3, 0, 0], [3, 1, 0],  # 0 0 0, then 1: a new class enters
                           [2, 2, 0],   # 1: below 4 // 2, the memory full: one of class 0 (largest) leaves
                           [2, 2, 0],   # 1: class 1 holds 4 // 2 already: refused
                           [1, 2, 1],   # 2: new; the largest on a tie is class 0 (the first)
                           [1, 2, 1]]   # 0: class 0 holds 4 // 3 = 1 already: refused
    stored = {bytes(x.numpy()) for x in strat.images}
    assert bytes(images[3].numpy()) in stored and bytes(images[6].numpy()) in stored
    assert not {bytes(images[5].numpy()), bytes(images[7].numpy())} & stored  # the refused never entered


def test_gdumb_learns_only_from_its_memory_in_a_fresh_network(cifar_root):
    """The stream takes no step; after a task, a network initialised afresh from the run's generator
    trains passes x floor(memory / batch) clipped steps on the memory alone, whatever the network was."""
    sets = SGD + ["strategy.buffer_size=20", "strategy.passes=3", "train.batch_size=8"]
    runs = []
    for perturb in (False, True):
        ctx, scenario, strat = _context(cifar_root, "gdumb", sets, graph_capture=False)
        before = [p.detach().clone() for p in strat.model.parameters()]
        for start in (0, 8, 16):
            strat.observe(next_batch(ctx, scenario, 0, start=start))
        assert all(torch.equal(p, q) for p, q in zip(before, strat.model.parameters()))  # no step on the stream
        assert strat.count == 20
        if perturb:  # another starting network: the trained one must not depend on it
            with torch.no_grad():
                for p in strat.model.parameters():
                    p.add_(1.0)
        steps = []
        strat.optimizer.register_step_post_hook(lambda *_: steps.append(1))
        strat.after_task(scenario.tasks[0])
        assert len(steps) == 3 * (20 // 8)  # the last partial batch of every pass dropped
        runs.append([p.detach().clone() for p in strat.model.parameters()])
    assert all(torch.equal(p, q) for p, q in zip(*runs))


def test_gdumb_class_cap_all_keeps_the_first_images_of_each_class(cifar_root):
    """The authors' dataloader (drimpossible/GDumb src/dataloader.py): memory_size // classes images a
    class from the start, the first ones; later images of a full class never enter, nothing leaves."""
    ctx, scenario, strat = _context(cifar_root, "gdumb", SGD + ["strategy.buffer_size=25", "strategy.class_cap=all"],
                                    graph_capture=False)
    images = scenario.train_x[:7]
    for i, label in enumerate([3, 3, 3, 5, 3, 5, 5]):  # 25 // 10 classes = 2 a class
        strat.offer(images[i], label, 0)
    assert strat.count == 4 and strat.labels[:4].tolist() == [3, 3, 5, 5]
    kept = [bytes(x.numpy()) for x in strat.images[:4]]
    assert kept == [bytes(images[i].numpy()) for i in (0, 1, 3, 5)]


def test_gdumb_trains_only_after_the_last_task_with_the_authors_lr_per_pass(cifar_root):
    """train_after last: no step after an earlier task. warm_restarts, as the authors' main.py: pass 0 at
    lr / 10, pass 1 at lr, then cosine warm restarts (T_0 1, T_mult 2) from lr down to min_lr, by hand."""
    sets = SGD + ["strategy.buffer_size=20", "strategy.passes=6", "train.batch_size=8", "strategy.train_after=last",
                  "strategy.lr_schedule=warm_restarts", "strategy.min_lr=0.001"]
    ctx, scenario, strat = _context(cifar_root, "gdumb", sets, graph_capture=False)
    for start in (0, 8, 16):
        strat.observe(next_batch(ctx, scenario, 0, start=start))
    lrs = []
    strat.optimizer.register_step_post_hook(lambda opt, *_: lrs.append(opt.param_groups[0]["lr"]))
    before = [p.detach().clone() for p in strat.model.parameters()]
    strat.after_task(scenario.tasks[0])
    assert lrs == [] and all(torch.equal(p, q) for p, q in zip(before, strat.model.parameters()))
    strat.after_task(scenario.tasks[-1])
    lr, low = 0.05, 0.001
    cosine = lambda t, period: low + (lr - low) * (1 + math.cos(math.pi * t / period)) / 2
    per_pass = [lr / 10, lr, lr, cosine(1, 2), lr, cosine(1, 4)]  # restarts after 1, 2, 4 passes
    assert lrs == pytest.approx([v for v in per_pass for _ in range(20 // 8)])


def test_cutmix_pastes_a_box_from_the_permuted_batch_and_weights_by_its_area():
    """The authors' utils.py cutmix_data / rand_bbox, by hand from the same draws: lam ~ Beta(1, 1) is
    the uniform draw itself; the box of side sqrt(1 - lam) centred at (cx, cy), clipped; lam = 1 - area."""
    import sys

    from scipy.stats import beta
    from nlbench.registry import STRATEGIES
    cutmix = sys.modules[STRATEGIES["gdumb"].obj.__module__].cutmix  # baselines/gdumb.py, loaded as a plugin
    x, y = torch.randn(6, 3, 8, 8), torch.arange(6)
    for alpha in (1.0, 0.4):
        g = torch.Generator().manual_seed(3)
        mixed, pasted, lam = cutmix(x, y, alpha, g)
        g = torch.Generator().manual_seed(3)
        drawn = float(beta.ppf(float(torch.rand((), generator=g)), alpha, alpha))
        perm = torch.randperm(6, generator=g)
        cx, cy = int(torch.randint(8, (1,), generator=g)), int(torch.randint(8, (1,), generator=g))
        side = int(8 * math.sqrt(1 - drawn))
        x1, x2 = max(cx - side // 2, 0), min(cx + side // 2, 8)
        y1, y2 = max(cy - side // 2, 0), min(cy + side // 2, 8)
        expected = x.clone()
        expected[:, :, x1:x2, y1:y2] = x[perm][:, :, x1:x2, y1:y2]
        assert torch.equal(mixed, expected) and torch.equal(pasted, y[perm])
        assert lam == pytest.approx(1 - (x2 - x1) * (y2 - y1) / 64)
    assert not torch.equal(mixed, x)  # something was pasted (seed 3 draws a box)


def _icarl_module():
    import sys

    from nlbench.registry import STRATEGIES
    return sys.modules[STRATEGIES["icarl"].obj.__module__]  # baselines/icarl.py, loaded as a plugin


def test_icarl_herding_picks_the_running_mean_closest_to_the_class_mean():
    """mammoth utils/buffer.py fill_buffer (use_herding), by hand on four unit vectors with mean
    (0.52, 0.64): first (0.8, 0.6) at distance 0.283; then with it (0.28, 0.96), the pair's mean
    0.141 away; then (1, 0) (0.211 against 0.267 for (0, 1)); then (0, 1)."""
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6], [0.28, 0.96]])
    herding_order = _icarl_module().herding_order
    assert herding_order(feats, 4).tolist() == [2, 3, 0, 1]
    assert herding_order(feats, 2).tolist() == [2, 3]
    assert torch.equal(feats, torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6], [0.28, 0.96]]))  # not modified


def _icarl_after_first_task(cifar_root, buffer_size=8):
    ctx, scenario, strat = _context(cifar_root, "icarl", SGD[:-1] + [f"strategy.buffer_size={buffer_size}",
                                                                     "strategy.wd_reg=0.001"], graph_capture=False)
    strat.before_task(scenario.tasks[0])
    for start in (0, 8, 16):
        strat.observe(next_batch(ctx, scenario, 0, start=start))
    strat.after_task(scenario.tasks[0])
    return ctx, scenario, strat


def test_icarl_memory_is_herded_per_class_and_shrinks_to_the_first_of_each(cifar_root):
    """After task 1 (classes 0, 1): 8 // 2 = 4 images a class, each class's herding order of the
    normalised evaluation-mode features of its unaugmented training images. After task 2: 8 // 4 = 2
    a class, the old classes keeping their first two. The memory joins the next task's training data."""
    ctx, scenario, strat = _icarl_after_first_task(cifar_root)
    icarl = _icarl_module()
    model = copy.deepcopy(strat.model).eval()
    expected = {}
    for c in (0, 1):
        rows = scenario.tasks[0].train_idx[scenario.train_y[scenario.tasks[0].train_idx] == c]
        with torch.no_grad():
            f = model.features(ctx.prepare(scenario.train_x[rows], torch.zeros_like(rows), augment=False))
        expected[c] = rows[icarl.herding_order(f / f.norm(dim=1, keepdim=True), 4)]
    assert strat.memory.tolist() == expected[0].tolist() + expected[1].tolist()
    idx, tid = strat.training_samples(scenario.tasks[1])
    assert idx.tolist() == scenario.tasks[1].train_idx.tolist() + strat.memory.tolist()
    assert tid.tolist() == [1] * len(scenario.tasks[1].train_idx) + [0] * 8
    strat.before_task(scenario.tasks[1])
    strat.after_task(scenario.tasks[1])
    assert strat.memory[:4].tolist() == expected[0][:2].tolist() + expected[1][:2].tolist()
    assert sorted(scenario.train_y[strat.memory].tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]


def test_icarl_step_distils_the_old_sigmoids_with_binary_cross_entropy(cifar_root):
    """mammoth models/icarl.py observe/get_loss: BCE with logits over all outputs; targets one-hot,
    except the previous classes' columns = sigmoid of the previous network on the same input; plus
    wd_reg x sum of squared parameters; the optimizer's own weight decay off."""
    ctx, scenario, strat = _icarl_after_first_task(cifar_root)
    strat.before_task(scenario.tasks[1])
    model, old, batch = copy.deepcopy(strat.model), copy.deepcopy(strat.old), next_batch(ctx, scenario, 1)
    assert not old.training and all(g["weight_decay"] == 0 for g in strat.optimizer.param_groups)
    model.train()
    out = model(batch.x)
    with torch.no_grad():
        targets = F.one_hot(batch.y, 10).float()
        targets[:, :2] = torch.sigmoid(old(batch.x))[:, :2]
    loss = -(targets * F.logsigmoid(out) + (1 - targets) * F.logsigmoid(-out)).mean()
    sgd_step(model, loss + 0.001 * sum((p ** 2).sum() for p in model.parameters()), 0.05)
    strat.observe(batch)
    assert_same_parameters(model, strat.model)


def test_icarl_predicts_the_nearest_mean_of_exemplars(cifar_root):
    """mammoth models/icarl.py compute_class_means + forward: a class's mean averages the normalised
    features of its exemplars and of their horizontal flips, renormalised; a test image goes to the
    nearest mean of its normalised features; classes without exemplars are never predicted."""
    ctx, scenario, strat = _icarl_after_first_task(cifar_root)
    model = copy.deepcopy(strat.model).eval()
    labels = scenario.train_y[strat.memory]
    unit = lambda f: f / f.norm(dim=-1, keepdim=True)  # noqa: E731
    with torch.no_grad():
        means = []
        for c in (0, 1):
            x = ctx.prepare(scenario.train_x[strat.memory[labels == c]], strat.memory_tasks[labels == c], augment=False)
            means.append(unit((unit(model.features(x)).mean(0) + unit(model.features(x.flip(-1))).mean(0)) / 2))
        means = torch.stack(means)
        test = scenario.tasks[0].test_idx[:40].tolist() + scenario.tasks[1].test_idx[:40].tolist()
        x = ctx.prepare(scenario.test_x[test], torch.zeros(len(test), dtype=torch.long), augment=False)
        expected = torch.cdist(unit(model.features(x)), means).argmin(1)
        nme = strat.evaluation_model()
        nme.eval()
        predicted = nme(x).argmax(1)
    assert predicted.tolist() == expected.tolist()
    assert set(predicted.tolist()) <= {0, 1}


def test_clser_rates_for_the_verdict_profile_leave_under_1_percent_of_the_initial_weights_after_task_1():
    """docs/verdict.md, "CLS-ER's rates": the authors' alpha 0.999 leaves the stable model mostly random after
    the retention profile's 96-step first task; the re-derived rates (verdict-split's CLS-ER row) do not."""
    from nlbench.registry import STRATEGIES
    from nlbench.reporting.specs import load_campaign
    from nlbench.training import config as C
    module = __import__(STRATEGIES["clser"].obj.__module__, fromlist=["ema_rates_for"])
    spec = load_campaign("verdict-split")
    cfg = C.resolve("split-cifar", "clser", spec["profile"], {})
    steps = cfg["train"]["epochs"] * -(-2 * cfg["data"]["train_per_class"] // cfg["train"]["batch_size"])
    assert steps == 96
    row = next(r for r in spec["runs"] if r["label"] == "CLS-ER")["set"]
    derived = module.ema_rates_for(steps)
    assert row == {"strategy.stable_alpha": derived["stable_alpha"], "strategy.plastic_alpha": derived["plastic_alpha"]}
    assert module.initial_weight_share(steps, 0.1, derived["stable_alpha"]) < 0.01
    assert module.initial_weight_share(steps, 0.1, derived["stable_alpha"] + 0.01) >= 0.01  # the largest such rate
    assert module.initial_weight_share(steps, 0.1, 0.999) > 0.6 and module.initial_weight_share(480, 0.1, 0.999) > 0.5
    # the share is what a simulated stable memory holds: 2000 runs of the coin flips, by hand
    g = torch.Generator().manual_seed(0)
    flips = torch.rand(2000, steps, generator=g) < 0.1
    k = torch.arange(1, steps + 1, dtype=torch.float64)
    rate = torch.minimum(1 - 1 / (k + 1), torch.tensor(derived["stable_alpha"], dtype=torch.float64))
    simulated = torch.where(flips, rate, torch.ones_like(rate)).prod(1).mean().item()
    assert simulated == pytest.approx(module.initial_weight_share(steps, 0.1, derived["stable_alpha"]), rel=0.15)


@pytest.mark.parametrize("memory,expected", [("per_task", [250, 500]), (None, [32, 64]), ("batch", [32, 64])])
def test_agem_fills_its_memory_as_the_chosen_code_does_and_the_record_says_so(tmp_path, memory, expected):
    """per_task (DER's 2020 code): buffer_size // n_tasks images a task, so the buffer size matters; batch
    (mammoth 2022, the default): one training batch a task whatever the buffer. A run of two tasks, buffer 500."""
    import json
    import subprocess
    import sys
    sets = ["data.tasks=[0,2]", "train.epochs=1", "data.train_per_class=128", "data.test_per_class=10",
            "strategy.buffer_size=500"] + ([f"strategy.memory={memory}"] if memory else [])
    done = subprocess.run([sys.executable, "bench.py", "--scenario", "split-cifar", "--strategy", "agem", "--data", "mini",
                           "--quiet", "--out", str(tmp_path), "--set", *sets], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    record = json.loads(next(tmp_path.rglob("seed0.json")).read_text())
    assert [row["buffer"] for row in record["strategy_info"]["memory_filled"]] == expected


def test_online_agem_fills_a_reservoir_from_the_stream():
    from nlbench.registry import STRATEGIES
    entry = STRATEGIES["agem"]
    assert entry.obj.graph_safe_for({**entry.defaults, "memory": "reservoir"}) is False
    assert entry.obj.graph_safe_for(entry.defaults) is True


def test_the_cosine_head_is_the_authors_distlinear_one_step():
    """backbone.head: cosine against a transcription of AML's distLinear (model.py): x / (|x| + 1e-5),
    W / (|W_row| + 1e-5), 10 x their product; the same logits and the same SGD step."""
    from nlbench.training.models import CosineHead
    torch.manual_seed(0)
    head = CosineHead(16, 10)
    weight = head.weight.detach().clone().requires_grad_(True)
    x, y = torch.randn(8, 16), torch.randint(0, 10, (8,))

    def dist_linear(x, w):  # their forward, written out
        x_norm = torch.norm(x, p=2, dim=1).unsqueeze(1).expand_as(x)
        w_norm = torch.norm(w, p=2, dim=1).unsqueeze(1).expand_as(w)
        return 10 * torch.mm(x.div(x_norm + 0.00001), w.div(w_norm + 0.00001).transpose(0, 1))
    assert torch.allclose(head(x), dist_linear(x, weight), atol=1e-6)
    assert head.bias is None
    F.cross_entropy(head(x), y).backward()
    F.cross_entropy(dist_linear(x, weight), y).backward()
    assert torch.allclose(head.weight.grad, weight.grad, atol=1e-7)


def test_a_cosine_head_names_its_run_and_trains(tmp_path):
    import json
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "bench.py", "--scenario", "split-cifar", "--strategy", "er-ace", "--data",
                           "mini", "--quiet", "--out", str(tmp_path), "--set", "backbone.head=cosine", "data.tasks=[0,2]",
                           "train.epochs=1", "data.train_per_class=64", "data.test_per_class=20"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    record = json.loads(next(tmp_path.rglob("seed0.json")).read_text())
    assert record["run_name"] == "er-ace@backbone.head=cosine" and record["config"]["backbone"]["head"] == "cosine"
    assert record["acc"]["class_il"][0][0] > 50  # the first task's two classes are learnt

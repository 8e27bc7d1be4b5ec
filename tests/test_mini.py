"""The embedded mini CIFAR-10: real images in the standard conventions, --data selection, and an
end-to-end run on it that shows forgetting for plain Adam and less of it for replay."""
import pickle

import numpy as np
import pytest
import torch

from conftest import load_record
from nlbench.cli import main
from nlbench.training.data import MINI_PATH, load_mini, load_split

# batches.meta of the official archive, in order (labels 0..9).
STANDARD_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
STANDARD_MEAN = (0.4914, 0.4822, 0.4465)  # per-channel RGB means of the CIFAR-10 training set


@pytest.fixture(scope="module")
def mini():
    return load_mini(MINI_PATH)


def test_mini_set_shapes_labels_and_class_names(mini):
    assert mini.train_x.shape == (5000, 3, 32, 32) and mini.test_x.shape == (1000, 3, 32, 32)
    assert mini.train_x.dtype == torch.uint8 and mini.train_y.dtype == torch.int64
    assert torch.bincount(mini.train_y, minlength=10).tolist() == [500] * 10
    assert torch.bincount(mini.test_y, minlength=10).tolist() == [100] * 10
    assert [str(c) for c in np.load(MINI_PATH)["classes"]] == STANDARD_CLASSES
    assert int(mini.train_x.min()) == 0 and int(mini.train_x.max()) == 255  # 0-255, not rescaled


def test_mini_set_is_rgb_in_channel_planes(mini):
    x = mini.train_x.float() / 255
    # RGB order: the whole set's channel means match the standard statistics (BGR would swap the
    # first and last, 0.49 vs 0.45), and the classes photographed against sky or water are bluer
    # than red while deer and frogs (vegetation, soil) are redder than blue.
    assert torch.allclose(x.mean((0, 2, 3)), torch.tensor(STANDARD_MEAN), atol=0.01)
    means = {c: x[mini.train_y == i].mean((0, 2, 3)) for i, c in enumerate(STANDARD_CLASSES)}
    for c in ("airplane", "ship"):
        assert means[c][2] - means[c][0] > 0.04, (c, means[c])
    for c in ("deer", "frog"):
        assert means[c][0] - means[c][2] > 0.08, (c, means[c])
    # Channel planes (N, 3, 32, 32), as the standard rows of R, G, B planes reshape to: neighbouring
    # pixels are strongly correlated; reading interleaved RGB as planes drops this to about 0.75.
    left, right = x[..., :-1].flatten(), x[..., 1:].flatten()
    assert torch.corrcoef(torch.stack([left, right]))[0, 1] > 0.85


def test_mini_set_reads_back_identically_through_the_standard_layout(mini, tmp_path):
    """Written as official batch files (rows of R, G, B planes), the standard reader yields the same tensors."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": mini.test_x.reshape(-1, 3072).numpy(), "labels": mini.test_y.tolist()}, f)
    x, y = load_split(folder, train=False)
    assert torch.equal(x, mini.test_x) and torch.equal(y, mini.test_y)


def _run(argv, tmp_path, capsys):
    code = main([*argv, "--out", str(tmp_path / "runs"), "--quiet", "--device", "cpu"])
    return code, capsys.readouterr().out


def test_auto_falls_back_to_the_mini_set_and_says_so(tmp_path, capsys, monkeypatch):
    """Without --data-root the default folder ($NLBENCH_DATA here) may lack the set: the mini set then."""
    empty = tmp_path / "no-cifar"
    empty.mkdir()
    monkeypatch.setenv("NLBENCH_DATA", str(empty))
    code, out = _run(["--scenario", "split-cifar", "--strategy", "adam", "--no-download",
                      "--set", "train.epochs=1", "data.train_per_class=50"], tmp_path, capsys)
    assert code == 0
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("data:"))
    assert "MINI CIFAR-10" in lines[start] and f"CIFAR-10 not found at {empty}" in lines[start]
    assert any("data: MINI set, not the full CIFAR-10" in line for line in lines[start + 1:])  # in the summary too
    record = load_record(tmp_path / "runs", "split-cifar", "adam", data="mini")
    assert record["data_set"] == "mini" and record["data_source"].startswith("nlbench mini CIFAR-10")
    assert record["images"] == {"train": 500, "test": 1000}


def test_data_mini_is_used_even_where_the_full_set_is_found(cifar_root, tmp_path, capsys):
    code, out = _run(["--scenario", "cifar10", "--strategy", "adam", "--data", "mini", "--data-root", str(cifar_root),
                      "--set", "train.epochs=1", "data.train_per_class=20", "backbone.width=8"], tmp_path, capsys)
    assert code == 0
    assert load_record(tmp_path / "runs", "cifar10", "adam", data="mini")["data_set"] == "mini"


def test_split_cifar_on_real_mini_images_adam_forgets_replay_forgets_less(tmp_path, capsys):
    """The newcomer's first run, quick profile, on real images: fine-tuning forgets old classes almost
    entirely in class-IL; a 500-sample replay buffer keeps part of them (seed 0 on our CPU: adam
    forgetting 73.9, final accuracy 12.0; replay 56.0 and 29.3; task-IL forgetting 31.5 vs 0.4)."""
    for strategy in ("adam", "replay"):
        code, _ = _run(["--scenario", "split-cifar", "--strategy", strategy, "--data", "mini"], tmp_path, capsys)
        assert code == 0
    adam, replay = (load_record(tmp_path / "runs", "split-cifar", s, data="mini")["metrics"] for s in ("adam", "replay"))
    assert adam["class_il"]["learning_acc"] > 60           # each task is learnt when it is trained
    assert adam["class_il"]["forgetting"] > 50             # ... and then overwritten
    assert adam["class_il"]["avg_acc"] < 20                # about one task's worth of 5
    assert replay["class_il"]["forgetting"] < adam["class_il"]["forgetting"] - 10
    assert replay["class_il"]["avg_acc"] > adam["class_il"]["avg_acc"] + 10
    assert replay["task_il"]["forgetting"] < adam["task_il"]["forgetting"] - 15

"""Shared fixtures: a tiny synthetic CIFAR-10 in the standard layout, written by the tests.

Each class has a smooth random colour template; images are the template plus noise, so a small
CNN learns them in a few epochs and the real reader, scenarios and augmentation are exercised.
"""
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nlbench.plugins import load_builtins

TRAIN_PER_CLASS, TEST_PER_CLASS = 60, 20
# Tiny settings for every run in the tests: small CNN, few images, few epochs.
TINY = ["backbone.width=8", "train.epochs=2", "train.batch_size=16", "train.log_every=5"]


def _templates(rng) -> np.ndarray:
    grid = torch.from_numpy(rng.uniform(0, 1, size=(10, 3, 4, 4)).astype(np.float32))
    return F.interpolate(grid, size=(32, 32), mode="bilinear", align_corners=False).numpy()  # (10, 3, 32, 32)


def _images(templates, labels, rng) -> np.ndarray:
    noise = rng.normal(0, 0.15, size=(len(labels), 3, 32, 32))
    x = np.clip(templates[labels] + noise, 0, 1) * 255
    return x.astype(np.uint8).reshape(len(labels), 3072)


def write_synthetic_cifar(root, train_per_class=TRAIN_PER_CLASS, test_per_class=TEST_PER_CLASS, seed=0):
    rng = np.random.default_rng(seed)
    templates = _templates(rng)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train_labels = rng.permutation(np.repeat(np.arange(10), train_per_class))
    test_labels = rng.permutation(np.repeat(np.arange(10), test_per_class))
    train = _images(templates, train_labels, rng)
    for b, chunk in enumerate(np.array_split(np.arange(len(train_labels)), 5), 1):
        with open(folder / f"data_batch_{b}", "wb") as f:
            pickle.dump({"data": train[chunk], "labels": train_labels[chunk].tolist()}, f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": _images(templates, test_labels, rng), "labels": test_labels.tolist()}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    return root


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory):
    return write_synthetic_cifar(tmp_path_factory.mktemp("cifar"))


@pytest.fixture(autouse=True, scope="session")
def _builtins():
    load_builtins()


@pytest.fixture
def bench(cifar_root, tmp_path):
    """Run the command line in-process on the synthetic data with TINY settings plus ``sets``.

    Returns (exit code, records folder)."""
    from nlbench.cli import main

    def call(*args, sets=(), out=None, tiny=True):
        out = out or tmp_path / "runs"
        sets = [*(TINY if tiny else []), *sets]
        argv = [*args, "--data-root", str(cifar_root), "--out", str(out), "--no-download", "--quiet",
                "--device", "cpu", *(["--set", *sets] if sets else [])]
        return main(argv), out
    return call


def load_record(out, scenario, name, seed=0, profile="quick", data="full"):
    """A test run's record, from its place: OUT/PROFILE/DATA/SCENARIO/RUN/seedK.json."""
    import json
    return json.loads((out / profile / data / scenario / name / f"seed{seed}.json").read_text())

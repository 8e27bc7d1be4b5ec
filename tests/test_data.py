"""The CIFAR-10 reader and batched augmentation."""
import pickle

import pytest
import torch

from nlbench.training.data import Augmenter, load_split, subset_per_class
from nlbench.errors import UserError


def test_reader_returns_uint8_nchw_and_labels(cifar_root):
    x, y = load_split(cifar_root / "cifar-10-batches-py", train=True)
    assert x.dtype == torch.uint8 and x.shape == (600, 3, 32, 32)
    assert y.dtype == torch.int64 and sorted(y.unique().tolist()) == list(range(10))


def test_subset_is_class_balanced_and_fixed():
    y = torch.arange(100) % 10
    a, b = subset_per_class(y, 3), subset_per_class(y, 3)
    assert torch.equal(a, b) and torch.bincount(y[a]).tolist() == [3] * 10


def test_crop_offsets_are_translations_and_flip_mirrors():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.int64).view(2, 3, 8, 8).to(torch.uint8)
    out = Augmenter(torch.Generator().manual_seed(0), pad=2)(x)
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):  # every output is some crop of the padded image, mirrored or not
        crops = [padded[i, :, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(-1)) for c in crops)


def test_augmentation_is_seeded_and_varies_per_image():
    x = torch.randint(0, 255, (64, 3, 32, 32), dtype=torch.uint8)
    a = Augmenter(torch.Generator().manual_seed(3))(x)
    b = Augmenter(torch.Generator().manual_seed(3))(x)
    assert torch.equal(a, b)
    same = [torch.equal(a[i], x[i]) for i in range(64)]
    assert 0 < sum(same) < 64 or not all(same)


def test_truncated_batch_file_names_the_file(cifar_root, tmp_path):
    import shutil
    bad = tmp_path / "cifar-10-batches-py"
    shutil.copytree(cifar_root / "cifar-10-batches-py", bad)
    data = (bad / "data_batch_3").read_bytes()
    (bad / "data_batch_3").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="data_batch_3"):
        load_split(bad, train=True)


def test_wrong_shape_is_rejected(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": torch.zeros(4, 100, dtype=torch.uint8).numpy(), "labels": [0, 1, 2, 3]}, f)
    with pytest.raises(UserError, match="N x 3072"):
        load_split(folder, train=False)

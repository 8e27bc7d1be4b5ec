"""CIFAR-10 as uint8 tensors, and batched augmentation on the run's device.

Why not torchvision's ``CIFAR10`` dataset: it refuses a folder whose batch files do not carry the
official md5 sums (a re-encoded copy must load here), and it yields PIL images one by one. We read
the same ``cifar-10-batches-py`` pickles ourselves, validate shapes and labels, and keep each split
as one (N, 3, 32, 32) uint8 tensor. The download itself is torchvision's, checksum verified.
"""
from __future__ import annotations

import os
import pathlib
import pickle

import numpy as np
import torch

from .errors import UserError

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
HOW_TO = ("pass --data-root DIR (or set NLBENCH_DATA) pointing at a folder that holds "
          f"{FOLDER}/ (without --no-download the official archive is fetched when missing)")


def default_root() -> pathlib.Path:
    env = os.environ.get("NLBENCH_DATA")
    if env:
        return pathlib.Path(env).expanduser()
    return pathlib.Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "nlbench"


def ensure_cifar10(root: str | os.PathLike | None, download: bool) -> pathlib.Path:
    """Return the ``cifar-10-batches-py`` folder under ``root``, downloading it if allowed."""
    root = pathlib.Path(root).expanduser() if root else default_root()
    folder = root / FOLDER
    if not folder.is_dir() and download:
        from torchvision.datasets.utils import download_and_extract_archive  # lazy: only when needed
        try:
            download_and_extract_archive(URL, str(root), md5=ARCHIVE_MD5)
        except Exception as exc:
            raise UserError(f"could not download CIFAR-10 to {root} ({type(exc).__name__}: {exc}); {HOW_TO}") from exc
    if not folder.is_dir():
        raise UserError(f"CIFAR-10 not found at {folder}; {HOW_TO}")
    return folder


# md5 of the official test_batch: tells the official files from a re-encoded copy in the records.
OFFICIAL_TEST_MD5 = "40351d587109b95175f43aff81a1287e"


def describe_source(folder: pathlib.Path) -> str:
    import hashlib
    digest = hashlib.md5((folder / "test_batch").read_bytes()).hexdigest()
    kind = "official CIFAR-10 files" if digest == OFFICIAL_TEST_MD5 else "re-encoded CIFAR-10 copy (not the official files)"
    return f"{kind}, test_batch md5 {digest}"


def _read_batch(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise UserError(f"CIFAR-10 batch file missing: {path}; {HOW_TO}")
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        data = np.asarray(entry["data"], dtype=np.uint8)
        labels = np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64)
    except Exception as exc:  # truncated pickle, wrong keys, not a pickle at all
        raise UserError(f"corrupt CIFAR-10 batch file {path} ({type(exc).__name__}); "
                        f"replace the folder with a fresh copy; {HOW_TO}") from exc
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise UserError(f"corrupt CIFAR-10 batch file {path}: data shape {data.shape}, "
                        f"{len(labels)} labels (expected N x 3072 and N labels); {HOW_TO}")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise UserError(f"corrupt CIFAR-10 batch file {path}: labels outside 0..9; {HOW_TO}")
    return data, labels


def load_split(folder: pathlib.Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One split as (N, 3, 32, 32) uint8 images and (N,) int64 labels, on the CPU."""
    parts = [_read_batch(folder / name) for name in (TRAIN_FILES if train else TEST_FILES)]
    data = np.concatenate([p[0] for p in parts]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(data), torch.from_numpy(labels)


def subset_per_class(labels: torch.Tensor, per_class: int | None, seed: int = 0) -> torch.Tensor:
    """Indices of a fixed, class-balanced subset (the same for every run: seed 0 by default)."""
    if per_class is None:
        return torch.arange(len(labels))
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero().flatten()
        keep.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    return torch.cat(keep).sort().values


class Augmenter:
    """Random crop (4-pixel zero padding) and horizontal flip as batched tensor ops.

    Why hand-written: torchvision's transforms v2 apply one crop offset to a whole batch; per-image
    offsets need this gather. Runs on the images' device with the run's own generator, so the same
    seed gives the same augmentation.
    """

    def __init__(self, generator: torch.Generator, pad: int = 4):
        self.g, self.pad = generator, pad

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C, H, W) uint8
        b, c, h, w = x.shape
        p, dev = self.pad, x.device
        padded = torch.nn.functional.pad(x, (p, p, p, p))                          # (B, C, H+2p, W+2p)
        dy = torch.randint(0, 2 * p + 1, (b,), generator=self.g, device=dev)
        dx = torch.randint(0, 2 * p + 1, (b,), generator=self.g, device=dev)
        flip = torch.rand(b, generator=self.g, device=dev) < 0.5
        rows = (dy[:, None] + torch.arange(h, device=dev))                          # (B, H)
        cols = dx[:, None] + torch.arange(w, device=dev)                            # (B, W)
        cols = torch.where(flip[:, None], cols.flip(1), cols)                      # flip = reversed columns
        bi = torch.arange(b, device=dev)[:, None, None]
        out = padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]    # (B, H, W, C)
        return out.permute(0, 3, 1, 2)


def normalize(x: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float, per-channel standardised."""
    mean = torch.tensor(MEAN, device=x.device, dtype=dtype).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD, device=x.device, dtype=dtype).view(1, 3, 1, 1) * 255
    return (x.to(dtype) - mean) / std

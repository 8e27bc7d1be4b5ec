"""CIFAR-10 as uint8 tensors, and batched augmentation on the run's device.

Two data sets: ``full`` (the standard ``cifar-10-batches-py`` folder, downloaded when missing) and
``mini`` (a small real subset shipped inside the package, ``nlbench/mini/``; see its README).
``select_data`` turns ``--data full|mini|auto`` into one of them; ``auto`` falls back to the mini
set only when the full set is neither found nor downloadable.

Why not torchvision's ``CIFAR10`` dataset: it refuses a folder whose batch files do not carry the
official md5 sums (a re-encoded copy must load here), and it yields PIL images one by one. We read
the same ``cifar-10-batches-py`` pickles ourselves, validate shapes and labels, and keep each split
as one (N, 3, 32, 32) uint8 tensor. The download itself is torchvision's, checksum verified.
"""
from __future__ import annotations

import hashlib
import io
import os
import pathlib
import pickle
import shutil
import socket
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from nlbench.errors import UserError
from nlbench.registry import PACKAGE

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
FULL_HOW_TO = ("pass --data-root DIR (or set NLBENCH_DATA) pointing at a folder that holds "
               f"{FOLDER}/ (without --no-download the official archive is fetched when missing)")
HOW_TO = FULL_HOW_TO + ", or run on the embedded mini set with --data mini"
DOWNLOAD_TIMEOUT_S = 30  # per network operation: a firewalled node fails fast instead of hanging
MINI_PATH = PACKAGE / "mini" / "cifar10_mini.npz"
# sha256 of the mini set's content (printed by nlbench/mini/draw_mini.py): a truncated or altered
# file (e.g. a Git LFS pointer) is refused with a message instead of training on garbage.
MINI_SHA256 = "3cfd6b46f6a1b17bbd23ef4cf9e8a85938643be6a57a31c281645fac2b8597f5"
DATA_CHOICES = ("auto", "full", "mini")


def default_root() -> pathlib.Path:
    env = os.environ.get("NLBENCH_DATA")
    if env:
        return pathlib.Path(env).expanduser()
    return pathlib.Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "nlbench"


def torchvision_module(name: str):
    """Import ``torchvision.<name>``, or say in one line why it cannot be: torch and torchvision from
    different builds (another index, another version) fail at import with an operator error."""
    import importlib
    try:
        return importlib.import_module(f"torchvision.{name}")
    except Exception as exc:  # ImportError, or RuntimeError 'operator torchvision::nms does not exist'
        raise UserError(torchvision_mismatch(exc)) from exc


TORCH_FIX = ("install the two from the same index, e.g. pip install torch torchvision --index-url "
             "https://download.pytorch.org/whl/cpu (CPU) or a matching pair such as torch==2.14.1 torchvision==0.29.1")


def torchvision_mismatch(exc: BaseException) -> str:
    """One line: torchvision does not import with this torch, why, and the fix (no ';' before the fix:
    --data auto's fallback line keeps the text up to the first one)."""
    import torch
    first = str(exc).splitlines()[0] if str(exc) else ""
    return (f"torchvision does not import with this torch {torch.__version__} ({type(exc).__name__}: {first}): "
            f"{TORCH_FIX}")


def torchvision_problem() -> str | None:
    """None when torchvision imports beside this torch, else the one-line reason and fix."""
    try:
        torchvision_module("ops")
    except UserError as exc:
        return str(exc)
    return None


def ensure_cifar10(root: str | os.PathLike | None, download: bool) -> pathlib.Path:
    """Return the ``cifar-10-batches-py`` folder under ``root``, downloading it if allowed."""
    root = pathlib.Path(root).expanduser() if root else default_root()
    if (root / "test_batch").is_file() and (root / "data_batch_1").is_file():
        return root  # the cifar-10-batches-py folder itself was given
    folder = root / FOLDER
    existed = root.exists()
    if not folder.is_dir() and download:
        download_and_extract_archive = torchvision_module("datasets.utils").download_and_extract_archive  # lazy
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # torchvision's urlopen has no timeout of its own
        try:
            download_and_extract_archive(URL, str(root), md5=ARCHIVE_MD5)
        except Exception as exc:
            if not existed:  # leave no empty (or half-downloaded) folder behind, e.g. under a typo'd path
                shutil.rmtree(root, ignore_errors=True)
            raise UserError(f"could not download CIFAR-10 to {root} ({type(exc).__name__}: {exc}); {HOW_TO}") from exc
        finally:
            socket.setdefaulttimeout(previous)
    if not folder.is_dir():
        raise UserError(f"CIFAR-10 not found at {folder}; {HOW_TO}")
    return folder


# md5 of the official test_batch: tells the official files from a re-encoded copy in the records.
OFFICIAL_TEST_MD5 = "40351d587109b95175f43aff81a1287e"


def describe_source(folder: pathlib.Path) -> str:
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


def fraction_per_class(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Sorted positions of a random ``fraction`` of each class (rounded down), drawn with ``seed``."""
    g = torch.Generator().manual_seed(20_000 + seed)
    keep = []
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero().flatten()
        keep.append(idx[torch.randperm(len(idx), generator=g)[:int(len(idx) * fraction)]])
    return torch.cat(keep).sort().values


class Augmenter:
    """Random crop (4-pixel zero padding) and horizontal flip as batched tensor ops.

    Why hand-written: torchvision's transforms v2 apply one crop offset to a whole batch; per-image
    offsets need this gather. Runs on the images' device with the run's own generator, so the same
    seed gives the same augmentation.
    """

    def __init__(self, generator: torch.Generator | None, pad: int = 4):
        self.g, self.pad = generator, pad

    def with_generator(self, generator: torch.Generator | None) -> "Augmenter":
        return self if generator is self.g else Augmenter(generator, self.pad)

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


@lru_cache(maxsize=None)
def _mean_std(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    # Made once per device: a host->device copy inside a training step would sync the host and
    # cannot be recorded in a CUDA graph.
    mean = torch.tensor(MEAN, dtype=dtype).view(1, 3, 1, 1).to(device) * 255
    std = torch.tensor(STD, dtype=dtype).view(1, 3, 1, 1).to(device) * 255
    return mean, std


def normalize(x: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float, per-channel standardised."""
    mean, std = _mean_std(x.device, dtype)
    return (x.to(dtype) - mean) / std


@dataclass(frozen=True)
class DataChoice:
    """Which CIFAR-10 a run uses: ``kind`` full or mini, the full set's folder, and why (auto)."""
    kind: str
    folder: pathlib.Path | None = None
    reason: str = ""

    def announce(self) -> str:
        if self.kind == "full":
            return f"data: full CIFAR-10 from {self.folder}"
        return ("data: the embedded MINI CIFAR-10 (500 train / 100 test real images per class), NOT the full set"
                + (f": {self.reason}" if self.reason else ""))


def select_data(choice: str, root: str | os.PathLike | None, download: bool) -> DataChoice:
    """``--data``: full never falls back, mini always uses the subset, auto tries full first."""
    if choice not in DATA_CHOICES:
        raise UserError(f"unknown --data '{choice}'; valid: {', '.join(DATA_CHOICES)}")
    if choice == "mini":
        return DataChoice("mini", reason="chosen with --data mini")
    try:
        return DataChoice("full", ensure_cifar10(root, download))
    except UserError as exc:  # not found and not downloadable; a corrupt full set still fails loudly later
        if choice == "full":
            raise
        if root is not None:  # a folder the user named: a typo must not silently mean the mini set
            raise UserError(f"--data-root {root} holds no CIFAR-10 ({str(exc).split(';')[0]}); give the folder that "
                            "contains cifar-10-batches-py/, or --data mini for the embedded subset") from exc
        why = str(exc).split(";")[0]
        return DataChoice("mini", reason=f"{why}; for the full set {FULL_HOW_TO}")


@dataclass(frozen=True)
class CifarArrays:
    """Both splits as uint8 (N, 3, 32, 32) images and int64 labels, plus a description for records."""
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str


def load_data(data: DataChoice) -> CifarArrays:
    """The arrays of a data choice, read once per process and path (sweeps reuse them)."""
    return load_mini(MINI_PATH) if data.kind == "mini" else _cached_full(data.folder)


@lru_cache(maxsize=2)
def _cached_full(folder: pathlib.Path) -> CifarArrays:
    return CifarArrays(*load_split(folder, True), *load_split(folder, False), describe_source(folder))


def mini_content_hash(npz) -> str:
    """sha256 over the mini set's arrays (not the .npz file, whose zip headers carry timestamps)."""
    h = hashlib.sha256()
    for key in ("classes", "train_jpeg", "train_offsets", "train_labels", "test_jpeg", "test_offsets", "test_labels"):
        h.update(key.encode())
        h.update(np.ascontiguousarray(npz[key]).tobytes())
    return h.hexdigest()


MINI_FIX = "reinstall nlbench (or restore nlbench/mini/ from git), or use --data full"


@lru_cache(maxsize=2)  # read once per process and path (sweeps reuse it)
def load_mini(path: pathlib.Path, verify: bool = True) -> CifarArrays:
    """Decode the embedded mini set. Its images are the source's JPEG bytes, decoded with Pillow as the
    full copy's writer does, so the pixels equal those of the same images in the full copy."""
    from PIL import Image  # torchvision's dependency; imported here so the full-data path never needs it
    if not path.is_file():
        raise UserError(f"the embedded mini CIFAR-10 is missing ({path}); {MINI_FIX}")
    try:
        with np.load(path) as archive:
            npz = dict(archive)  # an NpzFile decompresses an array again on every access: read each once
        digest = mini_content_hash(npz)
    except Exception as exc:  # truncated zip, an LFS pointer, wrong keys
        raise UserError(f"the embedded mini CIFAR-10 at {path} is unreadable ({type(exc).__name__}); {MINI_FIX}") from exc
    if verify and digest != MINI_SHA256:
        raise UserError(f"the embedded mini CIFAR-10 at {path} is corrupt (content sha256 {digest[:12]}, "
                        f"expected {MINI_SHA256[:12]}); {MINI_FIX}")
    if tuple(str(c) for c in npz["classes"]) != CLASSES:
        raise UserError(f"the embedded mini CIFAR-10 at {path} has unexpected class names; {MINI_FIX}")

    def decode(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        blob, offsets = npz[f"{split}_jpeg"], npz[f"{split}_offsets"]
        images = np.stack([np.asarray(Image.open(io.BytesIO(blob[a:b].tobytes())).convert("RGB"), dtype=np.uint8)
                           for a, b in zip(offsets[:-1], offsets[1:])])           # (N, H, W, C), RGB
        return (torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))),
                torch.from_numpy(npz[f"{split}_labels"].astype(np.int64)))

    train_x, train_y = decode("train")
    test_x, test_y = decode("test")
    source = (f"nlbench mini CIFAR-10 (embedded subset, {len(train_y) // 10} train / {len(test_y) // 10} test images "
              f"per class, from a JPEG re-encoded copy), content sha256 {digest[:12]}")
    return CifarArrays(train_x, train_y, test_x, test_y, source)

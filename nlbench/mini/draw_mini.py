#!/usr/bin/env python3
"""Draw the embedded mini CIFAR-10 (``cifar10_mini.npz`` beside this file) from the offline JPEG copy.

    python nlbench/mini/draw_mini.py PATH/TO/cifar10_jpeg.npz [--check DIR/cifar-10-batches-py]

The source is the offline CIFAR-10 copy these machines carry (``cifar10_jpeg.npz``: every image as
JPEG bytes, quality 75, with byte offsets and labels). For each class we draw, with a fixed numpy
generator (seed 0), 500 of its 5,000 training images and 100 of its 1,000 test images, then keep the
drawn images in their source order. The JPEG bytes are copied unchanged (no re-encoding), so the
mini set decodes to exactly the pixels of the same images in the full copy; ``source_index`` says
which ones. ``--check`` verifies that against a ``cifar-10-batches-py`` folder written from the same
source. The printed content hash goes into ``nlbench/training/data.py`` (``MINI_SHA256``).
"""
from __future__ import annotations

import argparse
import hashlib
import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
SEED, TRAIN_PER_CLASS, TEST_PER_CLASS = 0, 500, 100


def draw(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Source indices of ``per_class`` images of every class, in source order."""
    picks = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in range(10)]
    return np.sort(np.concatenate(picks))


def take_jpegs(blob: np.ndarray, offsets: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    parts = [blob[offsets[i]:offsets[i + 1]] for i in index]
    new_offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    new_offsets[1:] = np.cumsum([len(p) for p in parts])
    return np.concatenate(parts), new_offsets


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("source", help="the offline copy's cifar10_jpeg.npz")
    ap.add_argument("--out", default=str(HERE / "cifar10_mini.npz"))
    ap.add_argument("--check", help="a cifar-10-batches-py folder written from the same source, to compare pixels with")
    args = ap.parse_args()
    src = np.load(args.source)
    rng = np.random.default_rng(SEED)
    arrays = {"classes": src["classes"]}
    for split, per_class in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        index = draw(src[f"{split}_labels"], per_class, rng)
        jpeg, offsets = take_jpegs(src[f"{split}_jpeg"], src[f"{split}_offsets"], index)
        arrays.update({f"{split}_jpeg": jpeg, f"{split}_offsets": offsets,
                       f"{split}_labels": src[f"{split}_labels"][index].astype(np.uint8),
                       f"{split}_source_index": index.astype(np.int64)})
    np.savez_compressed(args.out, **arrays)  # the ~600 header bytes every small JPEG repeats compress well
    sys.path.insert(0, str(HERE.parent.parent))
    from nlbench.training.data import load_mini, mini_content_hash
    print(f"wrote {args.out} ({pathlib.Path(args.out).stat().st_size / 1e6:.1f} MB); "
          f"source sha256 {hashlib.sha256(pathlib.Path(args.source).read_bytes()).hexdigest()}")
    print(f"content sha256 (MINI_SHA256): {mini_content_hash(np.load(args.out))}")
    if args.check:
        check_against_full(pathlib.Path(args.check), load_mini(pathlib.Path(args.out), verify=False), arrays)
    return 0


def check_against_full(folder: pathlib.Path, mini, arrays) -> None:
    """Every mini image equals the full copy's image at its source index, label included."""
    from nlbench.training.data import load_split
    for split, x, y in (("train", mini.train_x, mini.train_y), ("test", mini.test_x, mini.test_y)):
        full_x, full_y = load_split(folder, train=split == "train")
        idx = arrays[f"{split}_source_index"]
        assert full_x[idx].equal(x), f"{split}: pixels differ from {folder}"
        assert full_y[idx].equal(y), f"{split}: labels differ from {folder}"
        print(f"check {split}: {len(idx)} images identical to {folder} at their source indices")

if __name__ == "__main__":
    sys.exit(main())

"""CUDA code paths: skipped without a GPU (CI has none); run by gpu_suite.sh on a lent GPU."""
import json

import pytest
import torch

from conftest import load_record

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_augmentation_runs_on_the_device_and_is_seeded():
    from nlbench.data import Augmenter
    x = torch.randint(0, 255, (256, 3, 32, 32), dtype=torch.uint8, device="cuda")
    a = Augmenter(torch.Generator("cuda").manual_seed(0))(x)
    b = Augmenter(torch.Generator("cuda").manual_seed(0))(x)
    assert a.device.type == "cuda" and a.dtype == torch.uint8 and torch.equal(a, b)


@pytest.mark.parametrize("strategy", ["adam", "ewc", "replay", "nested", "cms", "nested-cms", "joint"])
def test_strategies_run_on_cuda_with_bf16_and_channels_last(cifar_root, tmp_path, strategy):
    from nlbench.cli import main
    out = tmp_path / "runs"
    code = main(["--scenario", "split-cifar", "--strategy", strategy, "--device", "cuda", "--profile", "quick",
                 "--data-root", str(cifar_root), "--out", str(out), "--no-download", "--quiet",
                 "--set", "backbone.width=8", "train.epochs=2", "train.batch_size=16"])
    rec = load_record(out, "split-cifar", strategy)
    assert code == 0 and rec["status"] == "complete"
    assert rec["numerics"] == {"bf16_autocast": True, "channels_last": True, "compile": False}
    assert rec["peak_memory_kind"] == "cuda_max_allocated" and rec["device"].startswith("cuda:")
    assert rec["metrics"]["class_il"]["learning_acc"] is None or rec["metrics"]["class_il"]["learning_acc"] > 60


def test_same_seed_same_matrix_on_cuda_within_tolerance(cifar_root, tmp_path):
    from nlbench.cli import main
    mats = []
    for name in ("a", "b"):
        main(["--scenario", "split-cifar", "--strategy", "adam", "--device", "cuda", "--profile", "quick",
              "--data-root", str(cifar_root), "--out", str(tmp_path / name), "--no-download", "--quiet",
              "--set", "backbone.width=8", "train.epochs=1", "scenario.n_tasks=2"])
        mats.append(load_record(tmp_path / name, "split-cifar", "adam")["acc"]["class_il"])
    # cuDNN may pick non-deterministic kernels: allow a few test images to flip
    for r0, r1 in zip(*mats):
        assert all(abs(u - v) <= 5.0 for u, v in zip(r0, r1))


def test_speed_on_cuda_reports_tflops(cifar_root, tmp_path):
    from nlbench.cli import main
    out = tmp_path / "speed.json"
    code = main(["speed", "--device", "cuda", "--profile", "quick", "--images", "600", "--workers", "2",
                 "--skip-avalanche", "--data-root", str(cifar_root), "--no-download", "--out", str(out)])
    res = json.loads(out.read_text())
    assert code == 0 and res["achieved_tflops"] > 0 and res["peak_memory_mb"] > 0

"""``bench.py speed`` in CI size on the CPU: every loop runs and the JSON has its keys."""
import json

from nlbench.cli import main

KEYS = ("device", "backbone", "batches", "train_flops_per_image", "numerics", "versions")
ROW_KEYS = ("batch_size", "native_images_per_s", "dataloader_images_per_s", "avalanche_images_per_s",
            "best_native_images_per_s", "best_over_dataloader", "best_over_avalanche")


def test_speed_cpu_small(cifar_root, tmp_path):
    out = tmp_path / "speed.json"
    code = main(["speed", "--device", "cpu", "--images", "200", "--workers", "0", "--set", "backbone.width=8",
                 "--batch-sizes", "16", "32", "--data-root", str(cifar_root), "--no-download", "--out", str(out)])
    res = json.loads(out.read_text())
    assert code == 0 and all(k in res for k in KEYS)
    assert [r["batch_size"] for r in res["batches"]] == [16, 32]
    for row in res["batches"]:
        assert all(k in row for k in ROW_KEYS)
        assert row["native_images_per_s"] > 0 and row["dataloader_images_per_s"] > 0 and row["avalanche_images_per_s"] > 0
    assert res["backbone"] == "cnn"


def test_speed_defaults_to_runs_not_the_committed_file(monkeypatch, cifar_root, tmp_path):
    monkeypatch.chdir(tmp_path)
    code = main(["speed", "--device", "cpu", "--images", "200", "--workers", "0", "--set", "backbone.width=8",
                 "--skip-avalanche", "--data-root", str(cifar_root), "--no-download"])
    assert code == 0 and (tmp_path / "runs" / "speed.json").exists()

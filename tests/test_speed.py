"""``bench.py speed`` in CI size on the CPU: all three loops run and the JSON has its keys."""
import json

from nlbench.cli import main

KEYS = ("device", "backbone", "batch_size", "native_images_per_s", "dataloader_images_per_s",
        "avalanche_images_per_s", "native_over_dataloader", "native_over_avalanche")


def test_speed_cpu_small(cifar_root, tmp_path):
    out = tmp_path / "speed.json"
    code = main(["speed", "--device", "cpu", "--images", "200", "--workers", "0", "--set", "backbone.width=8",
                 "--data-root", str(cifar_root), "--no-download", "--out", str(out)])
    res = json.loads(out.read_text())
    assert code == 0 and all(k in res for k in KEYS)
    assert res["native_images_per_s"] > 0 and res["dataloader_images_per_s"] > 0 and res["avalanche_images_per_s"] > 0
    assert res["backbone"] == "cnn" and res["batch_size"] == 32

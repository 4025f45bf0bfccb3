"""Stage-2 training throughput on one GPU: images/s through the real trainer, from the uint8 cache.

For each backbone and precision mode it trains SADH for a few short epochs (Fashion-MNIST images decoded once at
the backbone's resize size, 224x224 crops) and reports the mean images/s of the epochs after the first (which
holds cuDNN autotuning and torch.compile), the GPU utilisation NVML saw during those epochs, and peak memory.
It also times the input path alone (BatchLoader -> random crop/flip -> normalise, no network): when that is
faster than training, the GPU, not the input path, is the limit. Results merge into a JSON file after each mode.

    python bench/train_throughput.py --backbones efficientnet_lite0,resnet50 --modes fp32,bf16,bf16-cl,bf16-cl-compile
"""
from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from sadh.sdk.atomic import atomic_write_text
from sadh.train.augment import normalize, random_crop_flip
from sadh.train.cache import cache_images
from sadh.train.config import TrainConfig
from sadh.train.loader import BatchLoader
from sadh.train.trainer import train

HERE = Path(__file__).resolve().parent
MODES = {  # amp, channels_last, compile
    "fp32": ("off", False, False),
    "bf16": ("bf16", False, False),
    "bf16-cl": ("bf16", True, False),
    "bf16-cl-compile": ("bf16", True, True),
}


class Utilisation:
    """Samples NVML GPU utilisation (%) every `period` seconds on a thread; `mean(t0, t1)` averages a window."""

    def __init__(self, period: float = 0.05) -> None:
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
            self._read = lambda: pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
        except Exception as e:  # no NVML: throughput is still measured, utilisation is reported as None
            print(f"GPU utilisation not sampled: {e}")
            return
        self._thread = threading.Thread(target=self._run, args=(period,), daemon=True)
        self._thread.start()

    def _run(self, period: float) -> None:
        while not self._stop.wait(period):
            self.samples.append((time.time(), self._read()))

    def mean(self, t0: float, t1: float) -> float | None:
        """Mean utilisation of the samples taken between t0 and t1 (unix seconds), None without samples."""
        window = [u for t, u in self.samples if t0 <= t <= t1]
        return round(float(np.mean(window)), 1) if window else None


def input_path_rate(images: np.ndarray, batch_size: int, device: torch.device, size: int = 224, steps: int = 40) -> float:
    """Images/s of the input path alone: loader, crop/flip and normalise on the device, no network."""
    order = np.random.default_rng(0).permutation(len(images))
    labels = torch.zeros((len(images), 1))
    gen = torch.Generator().manual_seed(0)
    steps = min(steps, len(images) // batch_size)
    sync(device)
    t0 = time.perf_counter()
    with BatchLoader(images, labels, order, batch_size, steps, device) as loader:
        for x, _ in loader:
            normalize(random_crop_flip(x, size, gen), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    sync(device)
    return steps * batch_size / (time.perf_counter() - t0)


def sync(device: torch.device) -> None:
    """Wait for the device's queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    """Measure every backbone x mode and merge the results into the JSON file."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbones", default="efficientnet_lite0,resnet50")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--train-per-class", type=int, default=500, help="training images per class (x10 classes)")
    p.add_argument("--device", default="cuda", help="cuda (what this measures); cpu only checks the script runs")
    p.add_argument("--results", type=Path, default=HERE / "results" / "train_throughput.json")
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("train_throughput.py measures a GPU; none is visible to torch (--device cpu to try the script)")

    base = TrainConfig(query_per_class=10, train_per_class=args.train_per_class)
    data, split = base.load()
    util = Utilisation() if device.type == "cuda" else None
    results = json.loads(args.results.read_text()) if args.results.is_file() else {}
    results["gpu"] = torch.cuda.get_device_name() if device.type == "cuda" else None
    results["torch"] = torch.__version__
    results["protocol"] = (
        f"SADH stage 2, {len(split.train)} Fashion-MNIST images cached uint8 at 256 px, 224 px random crops, "
        f"batch {args.batch_size}, {args.epochs} epochs; images/s and GPU utilisation (NVML) are means over the "
        "epochs after the first; fp32 runs with TF32 convolutions and float32 matmuls (the trainer's CUDA setting)"
    )
    runs = results.setdefault("runs", {})
    runs["input-path"] = {"images_per_s": round(input_path_rate(cache_images(data, split.train, 256), args.batch_size, device))}
    for mode in args.modes.split(","):  # compiled modes last: their first epoch is long
        for backbone in args.backbones.split(","):
            amp, channels_last, compiled = MODES[mode]
            with tempfile.TemporaryDirectory() as out:
                cfg = TrainConfig(
                    method="sadh", backbone=backbone, bits=64, epochs=args.epochs, batch_size=args.batch_size,
                    query_per_class=10, train_per_class=args.train_per_class, label_epochs=1, eval_every=args.epochs,
                    eval_database=1000, amp=amp, channels_last=channels_last, compile=compiled, out=out, progress=False,
                    device=args.device,
                )
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                t0 = time.perf_counter()
                result = train(cfg, data, split)
                wall = time.perf_counter() - t0
            timed = result.history[1:] or result.history
            start, end = timed[0]["finished_at"] - timed[0]["seconds"], timed[-1]["finished_at"]
            runs[f"{backbone}/{mode}"] = {
                "images_per_s": round(float(np.mean([h["images_per_s"] for h in timed]))),
                "first_epoch_s": round(result.history[0]["seconds"], 1),
                "gpu_util_percent": util.mean(start, end) if util else None,
                "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if util else None,
                "call_wall_s": round(wall, 1),
                "epochs": [round(h["images_per_s"]) for h in result.history],
            }
            args.results.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(args.results, json.dumps(results, indent=1))
            print(f"{backbone} {mode}: {runs[f'{backbone}/{mode}']}", flush=True)
            del result
            if device.type == "cuda":
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()

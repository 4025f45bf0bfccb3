"""Footprint of the runtime per install flavour: installed size, time of `import sadh.sdk`, and RSS of an Encoder plus
a 1M x 64-bit index after one search, step by step (with tracemalloc peaks of add and search).

Flavours, each a fresh venv with `pip install` of this checkout (not editable), pinned by requirements/ci.txt:
* cpu: `pip install ".[cpu]"` (numpy, onnxruntime, opencv-python-headless from PyPI: desktops, CI).
* runtime-only: `pip install .` into a venv that already sees numpy, onnxruntime and OpenCV from elsewhere (a .pth to
  another venv plays JetPack's system packages seen through --system-site-packages): sadh alone is installed.
Writes bench/results/footprint_bench.json.  Usage: python bench/footprint_bench.py MODEL.onnx
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from sadh.sdk.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results" / "footprint_bench.json"
IMPORT_RUNS = 7
SIZES = """
import json, sysconfig
from importlib import metadata
sizes = {}
for dist in metadata.distributions(path=[sysconfig.get_paths()["purelib"]]):  # this venv's own, not what a .pth adds
    files = [f.locate() for f in dist.files or []]
    sizes[dist.metadata["Name"]] = sum(p.stat().st_size for p in files if p.is_file())
print(json.dumps(sizes))
"""
IMPORT_TIME = "import time; t = time.perf_counter(); import sadh.sdk; print(time.perf_counter() - t)"
RSS_STEPS = """
import json, sys, tracemalloc
import numpy as np

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024

steps = [("python", rss_mb())]
import sadh.sdk
from sadh.sdk import Encoder, HammingIndex
steps.append(("import sadh.sdk", rss_mb()))
encoder = Encoder(sys.argv[1])
steps.append(("Encoder (imports onnxruntime, opens the session)", rss_mb()))
encoder.encode(np.zeros((480, 640, 3), np.uint8))
steps.append(("first encode of a 640x480 frame (imports OpenCV)", rss_mb()))
codes = np.random.default_rng(0).integers(0, 256, (1_000_000, 8), dtype=np.uint8)
steps.append(("1M x 64-bit codes in an array (8 MB)", rss_mb()))
index = HammingIndex(64)
tracemalloc.start()
index.add(codes)
add_peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
steps.append(("index.add of the 1M codes", rss_mb()))
del codes
steps.append(("codes array freed (the index keeps its own copy)", rss_mb()))
tracemalloc.start()
index.search(np.zeros((1, 8), np.uint8), 10)
search_peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
steps.append(("one search, k=10", rss_mb()))
print(json.dumps({"steps": steps, "add_tracemalloc_peak_mb": add_peak / 2**20, "search_tracemalloc_peak_mb": search_peak / 2**20}))
"""


def run(python: Path, code: str, *args: str) -> str:
    """stdout of `python -c code args` (from /, so the checkout is not on sys.path)."""
    return subprocess.run([str(python), "-c", code, *args], capture_output=True, text=True, check=True, cwd="/").stdout


def make_venv(path: Path, install: list[str], sees: Path | None = None) -> Path:
    """A fresh venv at `path` (seeing the site-packages of `sees` after its own) with `install` pip-installed."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    python = path / "bin" / "python"
    if sees is not None:
        site = run(python, "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip()
        other = run(sees, "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip()
        Path(site, "system-packages.pth").write_text(other + "\n")
    env = {**os.environ, "PIP_CONSTRAINT": str(ROOT / "requirements" / "ci.txt")}
    subprocess.run([str(python), "-m", "pip", "install", "-q", *install], check=True, env=env, capture_output=True)
    return python


def measure(python: Path, model: Path, baseline: dict[str, int]) -> dict:
    """Installed size (what this flavour added to a bare venv), import time and the RSS steps."""
    sizes = json.loads(run(python, SIZES))
    added = {name: size for name, size in sizes.items() if name not in baseline}
    times = [float(run(python, IMPORT_TIME)) for _ in range(IMPORT_RUNS)]
    return {
        "installed_mb": sum(added.values()) / 2**20,
        "installed_by_distribution_mb": {k: v / 2**20 for k, v in sorted(added.items(), key=lambda kv: -kv[1])},
        "import_sadh_sdk_ms_median": 1000 * statistics.median(times),
        "import_runs": IMPORT_RUNS,
        **json.loads(run(python, RSS_STEPS, str(model))),
    }


def main() -> None:
    """Build the flavours in a temporary folder, measure them, write the JSON and print a summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="an exported .onnx model (its Encoder is measured)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bare = make_venv(Path(tmp, "bare"), ["pip"])
        baseline = json.loads(run(bare, SIZES))
        cpu = make_venv(Path(tmp, "cpu"), [f"{ROOT}[cpu]"])
        runtime = make_venv(Path(tmp, "runtime"), [str(ROOT)], sees=cpu)
        report = {
            "config": {"python": platform.python_version(), "machine": platform.machine(), "model": args.model.name},
            "flavours": {"cpu": measure(cpu, args.model.resolve(), baseline), "runtime-only": measure(runtime, args.model.resolve(), baseline)},
        }
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    for name, r in report["flavours"].items():
        print(f"{name}: installed {r['installed_mb']:.1f} MB, import sadh.sdk {r['import_sadh_sdk_ms_median']:.0f} ms, "
              f"add peak {r['add_tracemalloc_peak_mb']:.1f} MB, search peak {r['search_tracemalloc_peak_mb']:.2f} MB")
        for step, mb in r["steps"]:
            print(f"    {mb:7.1f} MB  {step}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Speed of the retrieval metrics at the size the SDK promises: 1,000 queries x 100,000 database codes.

Random 64-bit codes and multi-hot labels (10 classes, each item 1-6 of them, as the mosaic sets have); one
process, numpy's own threads. Times (best of --runs) mean_average_precision and graded_metrics at topk 100,
1000 and all, and ndcg_at_k at the eval report's cut-offs. Writes bench/results/metrics_bench.json.

    nice python bench/metrics_bench.py
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from sadh.sdk.atomic import atomic_write_text
from sadh.sdk.codes import pack_codes
from sadh.sdk.metrics import graded_metrics, mean_average_precision, ndcg_at_k

HERE = Path(__file__).resolve().parent
BITS, CLASSES = 64, 10
NDCG_KS = np.array([1, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000])


def random_set(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Packed random codes and multi-hot labels with 1-6 distinct classes per item."""
    labels = np.zeros((n, CLASSES), np.uint8)
    for i, k in enumerate(rng.integers(1, 7, n)):
        labels[i, rng.choice(CLASSES, k, replace=False)] = 1
    return pack_codes(rng.integers(0, 2, (n, BITS)).astype(bool)), labels


def best_seconds(fn, runs: int) -> float:
    """Fastest wall time of `runs` calls."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    """Time each metric and write the results file."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--database", type=int, default=100_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--results", type=Path, default=HERE / "results" / "metrics_bench.json")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    (q, ql), (db, dl) = random_set(args.queries, rng), random_set(args.database, rng)
    cases = {f"map@{k or 'all'}": (lambda k=k: mean_average_precision(q, db, ql, dl, topk=k)) for k in (100, 1000, None)}
    cases.update({f"graded@{k or 'all'}": (lambda k=k: graded_metrics(q, db, ql, dl, topk=k)) for k in (100, 1000, None)})
    cases["ndcg_at_k (11 cut-offs, 1..5000)"] = lambda: ndcg_at_k(q, db, ql, dl, NDCG_KS)
    seconds = {}
    for name, fn in cases.items():
        seconds[name] = round(best_seconds(fn, args.runs), 3)
        print(f"{name}: {seconds[name]:.2f} s", flush=True)
    result = {
        "setup": f"{args.queries} queries x {args.database} database, {BITS}-bit random codes, {CLASSES} classes (1-6 per item); "
        f"best of {args.runs} runs",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f} at the end), numpy {np.__version__}",
        "seconds": seconds,
    }
    atomic_write_text(args.results, json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()

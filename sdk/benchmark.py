"""Speed of an exported model and of index search on this machine: encoder latency (batch 1) and throughput (batch
THROUGHPUT_BATCH) on camera-sized frames, search time per query, flat and with multi-index hashing."""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

from .errors import SadhError

if TYPE_CHECKING:
    from .encoder import Encoder
    from .index import HammingIndex
    from .mih import MultiIndexHashingIndex

LATENCY_RUNS = 50
THROUGHPUT_BATCH = 32
THROUGHPUT_RUNS = 5
WARMUP = 3
SEARCH_QUERIES = 200
SEARCH_K = 10
SYNTHETIC_DB = 100_000


def run_times(fn: Callable[[], object], runs: int) -> np.ndarray:
    """Seconds of `runs` calls of fn after WARMUP untimed calls."""
    for _ in range(WARMUP):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return np.array(times)


def bench_encoder(encoder: Encoder, frame_hw: tuple[int, int], seed: int = 0) -> dict[str, Any]:
    """Latency of one frame and throughput of batches of THROUGHPUT_BATCH camera-sized frames."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (THROUGHPUT_BATCH, *frame_hw, 3), dtype=np.uint8)
    single = run_times(lambda: encoder.encode(frames[0]), LATENCY_RUNS)
    batch = run_times(lambda: encoder.encode(frames), THROUGHPUT_RUNS)
    return {
        "frame": f"{frame_hw[1]}x{frame_hw[0]} BGR",
        "latency_ms_median": 1000 * float(np.median(single)),
        "latency_ms_p90": 1000 * float(np.percentile(single, 90)),
        "throughput_images_per_s": THROUGHPUT_BATCH / float(np.median(batch)),
        "throughput_batch": THROUGHPUT_BATCH,
    }


def bench_search(index: HammingIndex | MultiIndexHashingIndex, seed: int = 0) -> dict[str, Any]:
    """Search time per query (k=SEARCH_K) for SEARCH_QUERIES codes drawn from the index (or random when empty)."""
    rng = np.random.default_rng(seed)
    stored = index.codes
    queries = stored[rng.integers(0, len(stored), SEARCH_QUERIES)] if len(stored) else rng.integers(0, 256, (SEARCH_QUERIES, index.nbytes), dtype=np.uint8)
    one = run_times(lambda: index.search(queries[:1], SEARCH_K), LATENCY_RUNS)
    many = run_times(lambda: index.search(queries, SEARCH_K), THROUGHPUT_RUNS)
    return {
        "codes": len(index),
        "bits": index.bits,
        "k": SEARCH_K,
        "single_query_us": 1e6 * float(np.median(one)),
        "batched_us_per_query": 1e6 * float(np.median(many)) / SEARCH_QUERIES,
    }


def bench_mih(index: HammingIndex) -> dict[str, Any]:
    """`bench_search` with multi-index hashing over `index`, plus the seconds of the first search (it builds the tables)."""
    from .mih import MultiIndexHashingIndex

    mih = MultiIndexHashingIndex.over(index)
    t0 = time.perf_counter()
    mih.search(np.zeros((1, index.nbytes), np.uint8), 1)
    tables_s = time.perf_counter() - t0
    return {**bench_search(mih), "tables_s": tables_s}


def benchmark(encoder: Encoder, frame_hw: tuple[int, int], index: Optional[Path] = None, db_size: int = SYNTHETIC_DB) -> dict[str, Any]:
    """Time `encoder` (a `sadh.sdk.Encoder`) on frames of `frame_hw` (height, width) and the search over the index file
    `index` (default: `db_size` random codes), flat and MIH; the report with what was timed and on which machine."""
    from .extras import require
    from .index import HammingIndex

    if index is not None:
        hindex = HammingIndex.load(index)
        if hindex.bits != encoder.bits:
            raise SadhError(f"{index} holds {hindex.bits}-bit codes but {encoder.path} makes {encoder.bits}-bit codes")
        if not len(hindex):
            raise SadhError(f"{index} holds no codes, so there is no search to time; add some, or leave out --index")
    else:
        hindex = HammingIndex(encoder.bits)
        hindex.add(np.random.default_rng(0).integers(0, 256, (db_size, encoder.bits // 8), dtype=np.uint8))
    return {
        "model": str(encoder.path),
        "precision": encoder.precision,
        "bits": encoder.bits,
        "providers": encoder.providers,
        "onnxruntime": require("onnxruntime").__version__,
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],  # other work on the machine skews the timings
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "encoder": bench_encoder(encoder, frame_hw),
        "search": {**bench_search(hindex), "index": str(index) if index else f"random {db_size} codes"},
        "search_mih": bench_mih(hindex),
    }

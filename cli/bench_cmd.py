"""`sadh-cli bench`: encoder latency (batch 1) and throughput (batch 32), index search time per query (flat and MIH); JSON out."""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import typer

from .options import MODEL_OPTION, check_outputs

LATENCY_RUNS = 50
THROUGHPUT_BATCH = 32
MAX_FRAME_SIDE = 8192  # 8K cameras are 7680 x 4320; a batch of such frames is already 3 GB
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


def bench_encoder(encoder, frame_hw: tuple[int, int], seed: int = 0) -> dict:
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


def bench_search(index, seed: int = 0) -> dict:
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


def bench_mih(index) -> dict:
    """`bench_search` with multi-index hashing over `index`, plus the seconds of the first search (it builds the tables)."""
    from ..sdk.mih import MultiIndexHashingIndex

    mih = MultiIndexHashingIndex.over(index)
    t0 = time.perf_counter()
    mih.search(np.zeros((1, index.nbytes), np.uint8), 1)
    tables_s = time.perf_counter() - t0
    return {**bench_search(mih), "tables_s": tables_s}


def register(app: typer.Typer) -> None:
    """Add the `bench` command to the app."""

    @app.command("bench")
    def bench(
        model: Path = MODEL_OPTION,
        index: Optional[Path] = typer.Option(None, "--index", "-i", help="Index to time searches on (default: random codes)."),
        db_size: int = typer.Option(SYNTHETIC_DB, min=1, help="Size of the random index when --index is not given."),
        frame: str = typer.Option("640x480", help="Camera frame size WxH fed to the encoder (preprocessing included)."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="JSON file (default: <model>.bench.json beside the model)."),
    ) -> None:
        """Time the encoder (batch 1 latency, batch 32 throughput) and the index search, flat and MIH; write a JSON report.

        MIH pays off on trained (clustered) codes; on the default random codes it mostly takes the flat scan, so time it with --index.
        """
        import onnxruntime

        from ..sdk.atomic import atomic_write_text
        from ..sdk.errors import SadhError
        from ..sdk.index import HammingIndex
        from .encode_cmd import open_encoder

        try:
            w, h = (int(v) for v in frame.lower().split("x"))
        except ValueError:
            raise SadhError(f"bad --frame {frame!r}: use WxH, e.g. 640x480") from None
        if not (1 <= w <= MAX_FRAME_SIDE and 1 <= h <= MAX_FRAME_SIDE):
            raise SadhError(f"bad --frame {frame!r}: each side must be 1 to {MAX_FRAME_SIDE} pixels (a camera frame)")
        out = out or model.with_suffix(".bench.json")
        check_outputs({"--out": out}, [("--model", model), ("--index", index)])
        encoder = open_encoder(model, THROUGHPUT_BATCH)
        if index is not None:
            hindex = HammingIndex.load(index)
            if hindex.bits != encoder.bits:
                raise SadhError(f"{index} holds {hindex.bits}-bit codes but {model} makes {encoder.bits}-bit codes")
            if not len(hindex):
                raise SadhError(f"{index} holds no codes, so there is no search to time; add some, or leave out --index")
        else:
            hindex = HammingIndex(encoder.bits)
            hindex.add(np.random.default_rng(0).integers(0, 256, (db_size, encoder.bits // 8), dtype=np.uint8))
        result = {
            "model": str(model),
            "precision": encoder.precision,
            "bits": encoder.bits,
            "providers": encoder.providers,
            "onnxruntime": onnxruntime.__version__,
            "cpu_count": os.cpu_count(),
            "load_average_1min": os.getloadavg()[0],  # other work on the machine skews the timings
            "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "encoder": bench_encoder(encoder, (h, w)),
            "search": {**bench_search(hindex), "index": str(index) if index else f"random {db_size} codes"},
            "search_mih": bench_mih(hindex),
        }
        atomic_write_text(out, json.dumps(result, indent=1))
        e, s, m = result["encoder"], result["search"], result["search_mih"]
        typer.echo(
            f"encoder ({encoder.precision}, {', '.join(encoder.providers)}): {e['latency_ms_median']:.2f} ms/frame at batch 1, "
            f"{e['throughput_images_per_s']:.0f} images/s at batch {THROUGHPUT_BATCH}; search over {s['codes']} codes: "
            f"{s['single_query_us']:.0f} us (1 query), {s['batched_us_per_query']:.1f} us/query batched; with MIH (--mih): "
            f"{m['single_query_us']:.0f} us, {m['batched_us_per_query']:.1f} us/query after {m['tables_s']:.2f} s building its tables"
        )
        typer.echo(f"wrote {out}")

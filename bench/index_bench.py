"""Benchmark the numpy Hamming index against faiss (bench-only dependency), single thread, in one process.

Flat: N random codes, Q queries, k=100 at 32/64/128 bits vs faiss.IndexBinaryFlat (throughput and batch-1
latency, medians of >= 5 runs, results checked against faiss), beside the numpy floor (XOR + popcount of every
pair and nothing else) and MultiIndexHashingIndex on the same random codes (where it should not lose). MIH: clustered codes (1,000 centres, 5% bit
flips, 64 bits) vs the flat index and faiss.IndexBinaryMultiHash (speedup, recall@100, exact radius search).
Popcount: numpy's bitwise_count vs the numpy-1.x fallback, per word and in the flat search (64 bits, <= 200k codes).
Writes bench/results/index_bench.json and prints a table.  Usage: python bench/index_bench.py [--quick]
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy / faiss load their thread pools

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from sadh.sdk.atomic import atomic_write_text  # noqa: E402
from sadh.sdk import hamming_scan  # noqa: E402
from sadh.sdk.index import HammingIndex  # noqa: E402
from sadh.sdk.mih import MultiIndexHashingIndex  # noqa: E402
from sadh.sdk.popcount import popcount, popcount_swar  # noqa: E402

K = 100
OUT = Path(__file__).parent / "results" / "index_bench.json"


def median_times(fns: list, runs: int) -> list[float]:
    """Median wall time of each fn over `runs` rounds; every round calls all fns in turn (fair under changing load)."""
    for fn in fns:
        fn()  # warm-up
    times = [[] for _ in fns]
    for _ in range(runs):
        for fn, ts in zip(fns, times):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return [statistics.median(ts) for ts in times]


def batch1_latencies(indexes: list, q: np.ndarray, lat_queries: int, runs: int) -> list[float]:
    """Median seconds per single-query search (one query per call, as a camera frame) of each index."""
    return [
        t / lat_queries
        for t in median_times([lambda ix=ix: [ix.search(q[i : i + 1], K) for i in range(lat_queries)] for ix in indexes], runs)
    ]


def true_distances(db: np.ndarray, q: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Hamming distances between each query row and the codes with the given ids (-1 -> large)."""
    d = popcount(db[np.maximum(ids, 0)] ^ q[:, None, :]).sum(-1, dtype=np.int64)
    return np.where(ids < 0, 1 << 30, d)


def same_as_faiss(db, q, D, I, FD, FI) -> bool:
    """Equal as sets of (distance, id) per query, allowing any choice among ties at the k-th distance."""
    if not np.array_equal(D, np.sort(FD, axis=1)):
        return False
    if not np.array_equal(true_distances(db, q, FI), FD):
        return False  # faiss's own distances must be right too
    kth = D[:, -1:]
    for i in range(len(q)):
        if set(I[i][D[i] < kth[i]]) != set(FI[i][FD[i] < kth[i]]) or len(set(FI[i])) != K:
            return False
    return True


def recall_at_k(db, q, I_exact_D, I) -> float:
    """Fraction of returned ids (distinct) within the exact k-th distance, tie-robust recall@k."""
    d = true_distances(db, q, I)
    hits = [len(set(I[i][(d[i] <= I_exact_D[i, -1]) & (I[i] >= 0)])) for i in range(len(q))]
    return float(np.mean(np.minimum(hits, K)) / K)


def xor_popcount_floor(planes: np.ndarray, qplanes: np.ndarray, bits: int) -> None:
    """XOR + popcount of every query x code pair in the flat scan's blocks and nothing else: what any numpy scan does."""
    qb = hamming_scan.BLOCK_ELEMS // hamming_scan.MIN_DB_BLOCK
    nb = hamming_scan.MIN_DB_BLOCK
    bufs = [np.empty(qb * nb, dt) for dt in (planes.dtype, hamming_scan.dist_dtype(bits), hamming_scan.dist_dtype(bits))]
    for q0 in range(0, qplanes.shape[1], qb):
        for p0 in range(0, planes.shape[1], nb):
            hamming_scan._block_distances(planes[:, p0 : p0 + nb], qplanes[:, q0 : q0 + qb], *bufs)


def flat_section(n: int, nq: int, runs: int, lat_queries: int) -> list[dict]:
    """Our flat index vs faiss.IndexBinaryFlat on random codes at 32/64/128 bits."""
    rows = []
    rng = np.random.default_rng(0)
    for bits in (32, 64, 128):
        db = rng.integers(0, 256, (n, bits // 8), dtype=np.uint8)
        q = rng.integers(0, 256, (nq, bits // 8), dtype=np.uint8)
        ours = HammingIndex(bits)
        ours.add(db)
        theirs = faiss.IndexBinaryFlat(bits)
        theirs.add(db)
        mih = MultiIndexHashingIndex(bits)
        mih.add(db)
        D, I = ours.search(q, K)
        FD, FI = theirs.search(q, K)
        MD, MI = mih.search(q, K)
        planes, qplanes = ours.snapshot().planes, hamming_scan.to_planes(q, bits)
        t_ours, t_faiss, t_floor, t_mih = median_times(
            [lambda: ours.search(q, K), lambda: theirs.search(q, K), lambda: xor_popcount_floor(planes, qplanes, bits), lambda: mih.search(q, K)],
            runs,
        )
        lat_ours, lat_faiss = batch1_latencies([ours, theirs], q, lat_queries, runs)
        rows.append({
            "bits": bits,
            "ours_codes_per_s": n * nq / t_ours,
            "faiss_codes_per_s": n * nq / t_faiss,
            "throughput_ratio_ours_over_faiss": t_faiss / t_ours,
            "numpy_xor_popcount_floor_codes_per_s": n * nq / t_floor,
            "floor_ratio_over_faiss": t_faiss / t_floor,
            "mih_random_codes_per_s": n * nq / t_mih,
            "mih_random_ratio_over_flat": t_ours / t_mih,
            "mih_identical_to_flat": bool(np.array_equal(D, MD) and np.array_equal(I, MI)),
            "ours_batch1_us": lat_ours * 1e6,
            "faiss_batch1_us": lat_faiss * 1e6,
            "latency_ratio_ours_over_faiss": lat_ours / lat_faiss,
            "identical_to_faiss": same_as_faiss(db, q, D, I, FD, FI),
        })
        print_row(rows[-1])
    return rows


def popcount_section(n: int, nq: int, runs: int, lat_queries: int) -> dict:
    """numpy's bitwise_count vs the numpy-1.x fallback (sdk/popcount.py): ns per word, and the flat search with each."""
    rng = np.random.default_rng(2)
    out: dict = {"numpy_has_bitwise_count": hasattr(np, "bitwise_count"), "ns_per_word": {}, "flat_64_bits": {"n": n, "queries": nq}}
    paths = {"fallback": popcount_swar, **({"native": np.bitwise_count} if hasattr(np, "bitwise_count") else {})}
    for dtype in (np.uint32, np.uint64):
        x = rng.integers(0, np.iinfo(dtype).max, hamming_scan.BLOCK_ELEMS, dtype=dtype, endpoint=True)  # one scan block
        acc = np.empty(x.size, np.uint8)
        times = median_times([lambda f=f: f(x, out=acc) for f in paths.values()], runs)
        out["ns_per_word"][np.dtype(dtype).name] = {name: t / x.size * 1e9 for name, t in zip(paths, times)}
    db = rng.integers(0, 256, (n, 8), dtype=np.uint8)
    q = rng.integers(0, 256, (nq, 8), dtype=np.uint8)
    index = HammingIndex(64)
    index.add(db)
    try:
        for name, f in paths.items():
            calls: list[int] = []
            hamming_scan.popcount = lambda *a, f=f, **kw: calls.append(1) or f(*a, **kw)  # the flat scan's one call site
            index.search(q[:1], K)
            if not calls:
                raise SystemExit("the flat search no longer calls sadh.sdk.hamming_scan.popcount: fix the popcount section")
            hamming_scan.popcount = f
            (t,) = median_times([lambda: index.search(q, K)], runs)
            (lat,) = batch1_latencies([index], q, lat_queries, runs)
            out["flat_64_bits"][name] = {"codes_per_s": n * nq / t, "batch1_us": lat * 1e6}
    finally:
        hamming_scan.popcount = popcount
    print(f"popcount: {out}", flush=True)
    return out


def clustered(rng, centres: np.ndarray, n: int, p: float = 0.05) -> np.ndarray:
    """Codes = a random centre with each bit flipped with probability p, packed."""
    x = centres[rng.integers(0, len(centres), n)] ^ (rng.random((n, centres.shape[1])) < p)
    return np.packbits(x, axis=1)


def mih_section(n: int, nq: int, runs: int, lat_queries: int) -> dict:
    """MIH vs our flat index vs faiss.IndexBinaryMultiHash on clustered 64-bit codes."""
    rng = np.random.default_rng(1)
    centres = rng.integers(0, 2, (1000, 64)).astype(bool)
    db, q = clustered(rng, centres, n), clustered(rng, centres, nq)
    flat, mih = HammingIndex(64), MultiIndexHashingIndex(64)
    flat.add(db)
    mih.add(db)
    t = time.perf_counter()
    mih.search(q[:1], K)  # builds the substring tables
    build = time.perf_counter() - t
    D, I = flat.search(q, K)
    MD, MI = mih.search(q, K)
    fflat = faiss.IndexBinaryFlat(64)
    fflat.add(db)
    t_flat, t_mih, t_fflat = median_times([lambda: flat.search(q, K), lambda: mih.search(q, K), lambda: fflat.search(q, K)], runs)
    lat_flat, lat_mih, lat_fflat = batch1_latencies([flat, mih, fflat], q, lat_queries, runs)
    out = {
        "n": n, "queries": nq, "bits": 64, "k": K,
        "flat_s": t_flat, "mih_s": t_mih, "faiss_flat_s": t_fflat, "mih_table_build_s": build,
        "mih_speedup_over_flat": t_flat / t_mih,
        "mih_speedup_over_faiss_flat": t_fflat / t_mih,
        "mih_recall_at_100": recall_at_k(db, q, D, MI),
        "mih_identical_to_flat": bool(np.array_equal(D, MD) and np.array_equal(I, MI)),
        "batch1_us": {"flat": lat_flat * 1e6, "mih": lat_mih * 1e6, "faiss_flat": lat_fflat * 1e6},
        "faiss_multihash": [],
    }
    for nflip in (0, 1, 2):
        fm = faiss.IndexBinaryMultiHash(64, 4, 16)
        fm.add(db)
        fm.nflip = nflip
        _, FI = fm.search(q, K)
        t_flat_again, t_fm = median_times([lambda: flat.search(q, K), lambda: fm.search(q, K)], runs)
        out["faiss_multihash"].append({
            "nhash": 4, "b": 16, "nflip": nflip, "s": t_fm,
            "speedup_over_our_flat": t_flat_again / t_fm,
            "recall_at_100": recall_at_k(db, q, D, FI),
        })
    out["range"] = []
    for radius in (4, 8):
        lims, RD, RI = flat.range_search(q, radius)
        mlims, MRD, MRI = mih.range_search(q, radius)
        flims, FRD, FRI = fflat.range_search(q, radius + 1)  # faiss keeps d < radius
        same_faiss = all(
            set(zip(RD[lims[i] : lims[i + 1]], RI[lims[i] : lims[i + 1]]))
            == set(zip(FRD[flims[i] : flims[i + 1]], FRI[flims[i] : flims[i + 1]]))
            for i in range(nq)
        )
        t_rflat, t_rmih = median_times([lambda: flat.range_search(q, radius), lambda: mih.range_search(q, radius)], runs)
        out["range"].append({
            "radius": radius, "results": int(lims[-1]),
            "flat_s": t_rflat,
            "mih_s": t_rmih,
            "mih_identical_to_flat": bool(np.array_equal(lims, mlims) and np.array_equal(RD, MRD) and np.array_equal(RI, MRI)),
            "flat_same_set_as_faiss": same_faiss,
        })
    return out


def print_row(r: dict) -> None:
    """One line of the flat table."""
    print(
        f"{r['bits']:>4} bits  ours {r['ours_codes_per_s'] / 1e6:8.0f} Mcodes/s  faiss {r['faiss_codes_per_s'] / 1e6:8.0f}"
        f"  ratio {r['throughput_ratio_ours_over_faiss']:5.2f}  | batch-1 ours {r['ours_batch1_us']:8.0f} us"
        f"  faiss {r['faiss_batch1_us']:8.0f} us  | identical {r['identical_to_faiss']}"
        f"  | XOR+popcount floor {r['numpy_xor_popcount_floor_codes_per_s'] / 1e6:6.0f} Mcodes/s ({r['floor_ratio_over_faiss']:.2f}x faiss)"
        f"  | MIH on these random codes {r['mih_random_ratio_over_flat']:.2f}x flat, identical {r['mih_identical_to_flat']}",
        flush=True,
    )


def print_mih(m: dict) -> None:
    """The MIH table."""
    print(f"MIH (clustered, n={m['n']}, q={m['queries']}, 64 bits, k=100): flat {m['flat_s']:.3f} s, faiss flat {m['faiss_flat_s']:.3f} s,"
          f" MIH {m['mih_s']:.3f} s -> {m['mih_speedup_over_flat']:.1f}x over flat, {m['mih_speedup_over_faiss_flat']:.1f}x over faiss flat, recall@100 {m['mih_recall_at_100']:.4f}, identical {m['mih_identical_to_flat']},"
          f" table build {m['mih_table_build_s']:.2f} s")
    print("  batch-1 us per query: " + ", ".join(f"{name} {us:.0f}" for name, us in m["batch1_us"].items()))
    for f in m["faiss_multihash"]:
        print(f"  faiss MultiHash nflip={f['nflip']}: {f['s']:.3f} s -> {f['speedup_over_our_flat']:.1f}x over our flat, recall@100 {f['recall_at_100']:.4f}")
    for r in m["range"]:
        print(f"  range r={r['radius']}: {r['results']} results, flat {r['flat_s']:.3f} s, MIH {r['mih_s']:.3f} s,"
              f" MIH identical {r['mih_identical_to_flat']}, flat == faiss {r['flat_same_set_as_faiss']}")


def main() -> None:
    """Run the benchmark and write the JSON report."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="n=50,000, 100 queries, 3 runs")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--popcount-only", action="store_true", help="rerun only the popcount section, kept in the existing --out file")
    args = ap.parse_args()
    if args.quick:
        args.n, args.queries, args.runs = 50_000, 100, 3
    faiss.omp_set_num_threads(1)
    popcount_args = (min(args.n, 200_000), min(args.queries, 200), args.runs, min(50, args.queries))
    if args.popcount_only:
        report = json.loads(args.out.read_text())
        report["popcount"] = popcount_section(*popcount_args)
        atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
        return
    report = {
        "config": {"n": args.n, "queries": args.queries, "k": K, "runs": args.runs, "threads": 1,
                   "numpy": np.__version__, "faiss": faiss.__version__, "machine": platform.processor() or platform.machine(),
                   "cpus": os.cpu_count()},
        "flat": flat_section(args.n, args.queries, args.runs, min(50, args.queries)),
    }
    report["mih"] = mih_section(args.n, args.queries, args.runs, min(200, args.queries))
    print_mih(report["mih"])
    report["popcount"] = popcount_section(*popcount_args)
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

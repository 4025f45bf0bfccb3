"""Summarise the graded-relevance grid (bench/train_bench.py on the mosaic sets): a docs table, the verdict, a plot.

Reads the results files, prints the markdown table and, per set and bit length, SADH's NDCG@100 lead over the best
baseline of the same seed, and draws NDCG@100 by bit length (docs/img/graded_ndcg100.png). With `--docs PAGE`
the table and verdict replace the block between the `graded-summary` markers of that page, so the docs show what
the JSON holds.

    python bench/graded_summary.py --docs docs/graded-relevance.md
"""
from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sadh.sdk.atomic import atomic_write_text  # noqa: E402
from sadh.sdk.plots import save_png  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = {
    "2×2": HERE / "results" / "train_bench_graded_mosaic.json",
    "3×3": HERE / "results" / "train_bench_graded_mosaic3.json",
}
PLOT = HERE.parent / "docs" / "img" / "graded_ndcg100.png"
METHODS = ("sadh", "csq", "dpsh")
NAMES = {"sadh": "SADH", "csq": "CSQ", "dpsh": "DPSH", "sadh/reference": "SADH (reference recipe)"}
COLUMNS = (("graded", "ndcg@100", "NDCG@100", 4), ("graded", "ndcg@1000", "NDCG@1000", 4),
           ("graded", "acg@100", "ACG@100", 3), ("graded", "wap@1000", "WAP@1000", 3),
           (None, "map", "mAP@1000", 4), ("map_at", "all", "mAP@all", 4))
TARGET_POINTS = 2.0  # the target: SADH ahead of both baselines by at least this many NDCG@100 points
KEY = re.compile(r"^[^:]+:small_cnn/(?P<method>[a-z]+)/(?P<bits>\d+)(?:/seed(?P<seed>\d+))?(?P<reference>/reference)?$")
BEGIN, END = "<!-- graded-summary:begin -->", "<!-- graded-summary:end -->"


def load_rows() -> list[dict]:
    """One row per finished run: set, bits, seed, method (with /reference), and its metrics."""
    rows = []
    for name, path in RESULTS.items():
        for key, run in json.loads(path.read_text())["runs"].items():
            m = KEY.match(key)
            if m is None:
                continue
            method = m["method"] + ("/reference" if m["reference"] else "")
            rows.append({"set": name, "bits": int(m["bits"]), "seed": int(m["seed"] or 0), "method": method, "run": run})
    order = {m: i for i, m in enumerate((*METHODS, "sadh/reference"))}
    return sorted(rows, key=lambda r: (r["set"], r["bits"], r["seed"], order.get(r["method"], 99)))


def value(run: dict, group: str | None, name: str) -> float:
    """One metric of a run."""
    return run[name] if group is None else run[group][name]


def table(rows: list[dict]) -> str:
    """The markdown table, the best value of each (set, bits, seed) in bold."""
    best: dict[tuple, dict[str, float]] = defaultdict(dict)
    for r in rows:
        point = (r["set"], r["bits"], r["seed"])
        for group, name, _, _ in COLUMNS:
            best[point][name] = max(best[point].get(name, float("-inf")), value(r["run"], group, name))
    head = "| set | bits | seed | method | " + " | ".join(c[2] for c in COLUMNS) + " |"
    lines = [head, "|" + " --- |" * (4 + len(COLUMNS))]
    for r in rows:
        cells = []
        for group, name, _, digits in COLUMNS:
            v = value(r["run"], group, name)
            text = f"{v:.{digits}f}"
            cells.append(f"**{text}**" if v == best[(r["set"], r["bits"], r["seed"])][name] else text)
        lines.append(f"| {r['set']} | {r['bits']} | {r['seed']} | {NAMES.get(r['method'], r['method'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def leads(rows: list[dict]) -> dict[tuple[str, int, str], list[tuple[int, float, str]]]:
    """Per (set, bits, SADH recipe): for each seed with a baseline, SADH's NDCG@100 lead in points and the best baseline."""
    by_point: dict[tuple, dict[str, float]] = defaultdict(dict)
    for r in rows:
        by_point[(r["set"], r["bits"], r["seed"])][r["method"]] = 100 * r["run"]["graded"]["ndcg@100"]
    out: dict[tuple[str, int, str], list[tuple[int, float, str]]] = defaultdict(list)
    for (name, bits, seed), scores in sorted(by_point.items()):
        baselines = {m: s for m, s in scores.items() if m in METHODS[1:]}
        for sadh in ("sadh", "sadh/reference"):
            if sadh in scores and baselines:
                rival = max(baselines, key=baselines.get)
                out[(name, bits, sadh)].append((seed, scores[sadh] - baselines[rival], NAMES[rival]))
    return out


def verdict(rows: list[dict]) -> str:
    """One line per (set, bits, SADH recipe): the lead at each seed and whether the target holds there."""
    lines = []
    for (name, bits, sadh), per_seed in sorted(leads(rows).items()):
        shown = "; ".join(f"seed {s}: {d:+.1f} vs {rival}" for s, d, rival in per_seed)
        met = all(d >= TARGET_POINTS for _, d, _ in per_seed)
        lines.append(f"- {name}, {bits} bits, {NAMES[sadh]}: {shown} — {'met' if met else 'NOT met'}")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """NDCG@100 by bit length, one panel per set, one line per method (the mean over seeds, seeds as dots)."""
    fig, axes = plt.subplots(1, len(RESULTS), figsize=(4.2 * len(RESULTS), 3.4))
    for ax, name in zip(axes, RESULTS):
        for method in (*METHODS, "sadh/reference"):
            pts = [(r["bits"], r["run"]["graded"]["ndcg@100"]) for r in rows if r["set"] == name and r["method"] == method]
            if not pts:
                continue
            bits = sorted({b for b, _ in pts})
            means = [sum(v for b2, v in pts if b2 == b) / sum(1 for b2, _ in pts if b2 == b) for b in bits]
            line, = ax.plot(bits, means, marker="o", label=NAMES[method])
            ax.scatter([b for b, _ in pts], [v for _, v in pts], color=line.get_color(), s=10, alpha=0.5)
        ax.set_xticks(sorted({r["bits"] for r in rows if r["set"] == name}))
        ax.set_title(f"{name} mosaics")
        ax.set_xlabel("bits")
        ax.set_ylabel("NDCG@100 (labels shared)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_png(fig, path)


def main() -> None:
    """Print (or write into a docs page) the table and verdict, and draw the plot."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=Path, default=None, help="page whose graded-summary block is replaced")
    args = p.parse_args()
    rows = load_rows()
    block = f"{table(rows)}\n\nSADH's NDCG@100 lead over the best baseline of the same seed (target ≥ {TARGET_POINTS:g} points):\n\n{verdict(rows)}"
    plot(rows, PLOT)
    if args.docs is None:
        print(block)
        return
    page = args.docs.read_text()
    start, end = page.index(BEGIN) + len(BEGIN), page.index(END)
    atomic_write_text(args.docs, page[:start] + "\n" + block + "\n" + page[end:])
    print(f"wrote {args.docs} ({len(rows)} runs) and {PLOT}")


if __name__ == "__main__":
    main()

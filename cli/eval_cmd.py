"""`sadh-cli eval`: retrieval quality of an exported model on a dataset split, with plots and a retrieval grid."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import typer

from ..sdk.data import database_subset
from ..sdk.grid import encode_png, retrieval_grid
from .chunks import partial_path
from .options import (
    BATCH_OPTION, EVAL_DATABASE_NAMES, MODEL_OPTION, DataOptions, check_outputs, check_outputs_spare_images, data_options,
    load_for_model, model_split_path, next_hint, warn, written_before_interrupt,
)

GRID_QUERIES = 8
GRID_TOPK = 10
SEARCH_K = 100  # neighbours per query when timing the index search
TIE_GAP = 0.02  # a plain mAP this far from the tie-aware one owes it to the database order
METRICS_NAME = "metrics.json"
PR_NAME = "pr_curve.png"
PAN_NAME = "precision_at_n.png"
NDCG_NAME = "ndcg_at_k.png"  # multi-label data only
GRID_NAME = "retrieval_grid.png"
DATABASE_CODES_NAME = "database"  # its partial folder (database.partial) keeps encoded chunks until the database is done
PRECISION_NS = np.array([1, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000])


def _json_floats(values: np.ndarray) -> list[float | None]:
    """Floats for JSON, NaN as null."""
    return [None if np.isnan(v) else float(v) for v in values]


def grid_queries(labels: np.ndarray, count: int = GRID_QUERIES) -> np.ndarray:
    """Positions of up to `count` distinct queries for the grid (rows of `labels`): first one per class not yet shown
    (the first row of each such class), then the first other rows."""
    picked: list[int] = []
    for c in range(labels.shape[1]):
        if len(picked) < count and not labels[picked, c].any() and labels[:, c].any():
            picked.append(int(np.flatnonzero(labels[:, c])[0]))
    rest = np.setdiff1d(np.arange(len(labels)), picked)[: count - len(picked)]
    return np.array(sorted(picked) + rest.tolist(), np.int64)


def write_grid(data, q_idx: np.ndarray, db_idx: np.ndarray, q_codes: np.ndarray, index, path: Path, title: str) -> Path:
    """Retrieval grid PNG: a few queries with their top-10 from `index` (ids = positions in db_idx), distances and labels."""
    from ..sdk.atomic import atomic_write_bytes

    rows = grid_queries(data.labels[q_idx])
    dist, found = index.search(q_codes[rows], GRID_TOPK)
    hits = [[int(j) for j in row if j >= 0] for row in found]
    queries = [data.image(q_idx[r]) for r in rows]
    results = [[data.image(db_idx[j]) for j in row] for row in hits]
    q_labels = data.labels[q_idx[rows]]
    relevant = np.zeros((len(rows), GRID_TOPK), bool)
    for i, (q, row) in enumerate(zip(q_labels, hits)):
        relevant[i, : len(row)] = [(data.labels[db_idx[j]] & q).any() for j in row]

    def names(labels: np.ndarray) -> str:
        return ", ".join(data.class_names[c] for c in np.flatnonzero(labels)) or "(no label)"

    captions = [[names(q)] + [names(data.labels[db_idx[j]]) for j in row] for q, row in zip(q_labels, hits)]
    distances = [d[: len(row)] for d, row in zip(dist.tolist(), hits)]
    image = retrieval_grid(queries, results, relevant, captions, distances=distances, title=title)
    atomic_write_bytes(path, encode_png(image))
    return path


def warn_tie_order(plain: float, tie_aware: float) -> None:
    """Warn when the plain mAP (ties broken by database order) is more than TIE_GAP from the tie-aware one."""
    if abs(plain - tie_aware) > TIE_GAP:
        warn(
            f"ties decide much of this mAP ({plain:.4f}; {tie_aware:.4f} over random orders of tied items): many items share "
            "a code and the database order breaks their ties (a folder dataset is ordered by class); compare by the tie-aware mAP"
        )


def graded_scores(q_codes: np.ndarray, db_codes: np.ndarray, q_labels: np.ndarray, db_labels: np.ndarray, ks: np.ndarray) -> dict:
    """The graded metrics (relevance = labels shared) for metrics.json: NDCG, ACG, WAP (plain and tie-aware NDCG / ACG)
    at each GRADED_TOPKS cut-off within the database, as "ndcg@100" ..., and NDCG@K for each K in `ks`."""
    from ..sdk.metrics import GRADED_TOPKS, graded_metrics, ndcg_at_k

    scores: dict[str, Any] = {"relevance": "number of labels shared"}
    for k in (k for k in GRADED_TOPKS if k <= len(db_codes)):
        g = graded_metrics(q_codes, db_codes, q_labels, db_labels, topk=k)
        scores.update({f"ndcg@{k}": g.ndcg, f"acg@{k}": g.acg, f"wap@{k}": g.wap})
        scores.update({f"ndcg@{k}_tie_aware": g.tie_aware_ndcg, f"acg@{k}_tie_aware": g.tie_aware_acg})
    scores["ndcg_at_k"] = {"k": ks.tolist(), "ndcg": ndcg_at_k(q_codes, db_codes, q_labels, db_labels, ks).tolist()}
    return scores


def graded_line(scores: dict) -> str:
    """The lead graded metrics (GRADED_REPORT) of graded_scores, in words."""
    from ..sdk.metrics import GRADED_REPORT

    shown = [f"{m.upper()}@{k} {scores[f'{m}@{k}']:.4f}" for m, k in GRADED_REPORT if f"{m}@{k}" in scores]
    return "graded (relevance = labels shared): " + (", ".join(shown) or "database smaller than every cut-off")


def map_name(topk: int | None, database: int) -> str:
    """How to call the mAP that was computed: mAP@K, or mAP@all when K covers the whole database."""
    return "mAP@all" if topk is None or topk >= database else f"mAP@{topk}"


def evaluate(
    encoder, data, q_idx: np.ndarray, db_idx: np.ndarray, out_dir: Path, topk: int | None = None, db_codes: np.ndarray | None = None
) -> dict[str, Any]:
    """Score queries `q_idx` against database items `db_idx` (codes given, or encoded here); write metrics.json, plots, grid."""
    from ..sdk import metrics
    from ..sdk.atomic import atomic_write_text
    from ..sdk.index import HammingIndex
    from ..sdk.metrics import multi_label, topk_protocol
    from .encode_cmd import encode_items
    from .plots import plot_ndcg_at_k, plot_pr_curve, plot_precision_at_n

    queries = encode_items(encoder, data, q_idx, "queries")
    q_codes, q_idx, seconds, encoded = queries.codes, queries.ids, queries.seconds, queries.encoded
    database = None
    if db_codes is None:
        database = encode_items(encoder, data, db_idx, "database images", partial_path(out_dir / DATABASE_CODES_NAME))
        db_codes, db_idx, seconds, encoded = database.codes, database.ids, seconds + database.seconds, encoded + database.encoded
    q_labels, db_labels = data.labels[q_idx], data.labels[db_idx]
    index = HammingIndex(encoder.bits)
    index.add(db_codes)
    t0 = time.perf_counter()
    index.search(q_codes, min(SEARCH_K, len(db_idx)))
    search_s = time.perf_counter() - t0
    k, k_source = (topk, "--topk") if topk is not None else topk_protocol(db_labels, data.name)
    ns = PRECISION_NS[PRECISION_NS <= len(db_idx)]
    scores = metrics.mean_average_precision(q_codes, db_codes, q_labels, db_labels, topk=k)
    pan = (ns, metrics.precision_at_n(q_codes, db_codes, q_labels, db_labels, ns))
    pr = metrics.precision_recall_by_radius(q_codes, db_codes, q_labels, db_labels)
    result: dict[str, Any] = {
        "model": str(encoder.path),
        "precision": encoder.precision,
        "bits": encoder.bits,
        "dataset": data.name,
        "queries": int(len(q_idx)),
        "database": int(len(db_idx)),
        "topk": k,  # None: the whole database
        "topk_source": k_source,
        "map": scores.map,
        "map_tie_aware": scores.tie_aware_map,
        "precision_at_n": {"n": ns.tolist(), "precision": pan[1].tolist()},
        "pr_by_radius": {"radius": list(range(len(pr[0]))), "precision": _json_floats(pr[0]), "recall": _json_floats(pr[1])},
        "encode_ms_per_image": 1000 * seconds / encoded,
        "search_us_per_query": 1e6 * search_s / len(q_idx),
        "search_k": min(SEARCH_K, len(db_idx)),
    }
    if multi_label(db_labels):
        result["graded"] = graded_scores(q_codes, db_codes, q_labels, db_labels, ns)
    title = f"{data.name}, {encoder.bits} bits, {encoder.precision}"
    with written_before_interrupt(f"the report in {out_dir} was written completely"):  # never half of it over another
        plot_pr_curve({encoder.precision: pr}, out_dir / PR_NAME, title)
        plot_precision_at_n({encoder.precision: pan}, out_dir / PAN_NAME, title)
        if "graded" in result:
            plot_ndcg_at_k({encoder.precision: (ns, result["graded"]["ndcg_at_k"]["ndcg"])}, out_dir / NDCG_NAME, title)
        write_grid(data, q_idx, db_idx, q_codes, index, out_dir / GRID_NAME, title)
        atomic_write_text(out_dir / METRICS_NAME, json.dumps(result, indent=1))
        if database is not None:
            database.discard_partial()
    return result


def register(app: typer.Typer) -> None:
    """Add the `eval` command to the app."""

    @app.command("eval")
    @data_options
    def eval_(
        opts: DataOptions,
        model: Path = MODEL_OPTION,
        out: Path = typer.Option(Path("report"), "--out", "-o", help="Report folder (metrics.json and PNGs)."),
        topk: Optional[int] = typer.Option(
            None, min=1, help="mAP@K cut-off (default: all for single-label data; for multi-label data the named protocol's: "
            "1000 for the mosaic sets, 5000 for NUS-WIDE / MS-COCO, all for MIRFlickr / VOC, else 5000).",
        ),
        database: Optional[int] = typer.Option(
            None, *EVAL_DATABASE_NAMES, min=1, help="Evaluate against a seeded random subset of this many database items."
        ),
        batch: int = BATCH_OPTION,
    ) -> None:
        """Score query-vs-database retrieval: mAP@K, tie-aware mAP, precision@N, precision-recall by radius; for multi-label
        data also NDCG, ACG and WAP with relevance = the number of labels shared."""
        from .encode_cmd import open_encoder

        reports = {f"--out/{name}": out / name for name in (METRICS_NAME, PR_NAME, PAN_NAME, NDCG_NAME, GRID_NAME)}
        inputs = [("--model", model), ("the model's training split", model_split_path(model)), *opts.inputs()]
        check_outputs(reports, inputs, folders={"--out": out, "its partial folder": partial_path(out / DATABASE_CODES_NAME)})
        encoder = open_encoder(model, batch)
        data, split, _ = load_for_model(opts, encoder)
        check_outputs_spare_images(reports, data)
        r = evaluate(encoder, data, split.query, database_subset(split.database, database, opts.split_seed), out, topk)
        typer.echo(
            f"{map_name(r['topk'], r['database'])} {r['map']:.4f} (tie-aware {r['map_tie_aware']:.4f}) on {r['queries']} queries x "
            f"{r['database']} database, {r['bits']} bits, {r['precision']}; encode {r['encode_ms_per_image']:.2f} ms/image, "
            f"search {r['search_us_per_query']:.0f} us/query"
        )
        typer.echo(f"cut-off {map_name(r['topk'], r['database'])}: {r['topk_source']}")
        if "graded" in r:
            typer.echo(graded_line(r["graded"]))
        warn_tie_order(r["map"], r["map_tie_aware"])
        plots = (PR_NAME, PAN_NAME, *((NDCG_NAME,) if "graded" in r else ()), GRID_NAME)
        typer.echo(f"wrote {out / METRICS_NAME}, {', '.join(str(out / name) for name in plots)}")
        next_hint("sadh-cli", "index", "build", "--model", model, *opts.args(), "--out", "index.sidx")

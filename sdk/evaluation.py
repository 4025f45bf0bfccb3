"""Retrieval evaluation, in one place: `score` computes the metrics of query codes against database codes (mAP at the
protocol's cut-off, precision@N, precision-recall by radius, the graded block for multi-label data), `evaluate` adds
the search time and writes metrics.json, the plots and the retrieval grid, and `evaluate_model` encodes a dataset
split with an exported model (resumably) and evaluates it. Training and the export report score through `score`.
Without matplotlib (a runtime-only install) a report has no plots, with a warning logged under "sadh"."""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from . import metrics
from .data import LabeledImages
from .encoding import Progress, encode_items, no_progress, partial_path

if TYPE_CHECKING:
    from .encoder import Encoder
    from .index import HammingIndex

GRID_QUERIES = 8
GRID_TOPK = 10
SEARCH_K = 100  # neighbours per query when timing the index search
METRICS_NAME = "metrics.json"
PR_NAME = "pr_curve.png"
PAN_NAME = "precision_at_n.png"
NDCG_NAME = "ndcg_at_k.png"  # multi-label data only
GRID_NAME = "retrieval_grid.png"
REPORT_NAMES = (METRICS_NAME, PR_NAME, PAN_NAME, NDCG_NAME, GRID_NAME)  # what a report folder may hold
DATABASE_CODES_NAME = "database"  # its partial folder (database.partial) keeps encoded chunks until the database is done
PRECISION_NS = np.array([1, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000])

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GridItems:
    """What a retrieval grid shows: the dataset, and the dataset indices of the query codes and database codes."""

    data: LabeledImages
    query_ids: np.ndarray
    database_ids: np.ndarray


def map_name(topk: int | None, database: int) -> str:
    """How to call the mAP that was computed: mAP@K, or mAP@all when K covers the whole database."""
    return "mAP@all" if topk is None or topk >= database else f"mAP@{topk}"


def cutoff(db_labels: np.ndarray, dataset: str | None = None, topk: int | None = None) -> tuple[int | None, str]:
    """The mAP cut-off (None = all) and where it comes from: `topk` when given ("--topk"), else the convention for
    data called `dataset` with these labels (`sadh.sdk.metrics.topk_protocol`)."""
    return (topk, "--topk") if topk is not None else metrics.topk_protocol(db_labels, dataset)


def plot_names(result: Mapping[str, Any]) -> tuple[str, ...]:
    """The plots `evaluate` draws for these metrics (what it returns): PR and precision@N, NDCG@K for multi-label data."""
    return (PR_NAME, PAN_NAME, *((NDCG_NAME,) if "graded" in result else ()))


def _json_floats(values: np.ndarray) -> list[float | None]:
    """Floats for JSON, NaN as null."""
    return [None if np.isnan(v) else float(v) for v in values]


def graded_scores(q_codes: np.ndarray, db_codes: np.ndarray, q_labels: np.ndarray, db_labels: np.ndarray, ks: np.ndarray) -> dict:
    """The graded metrics (relevance = labels shared) for metrics.json: NDCG, ACG, WAP (plain and tie-aware NDCG / ACG)
    at each GRADED_TOPKS cut-off within the database, as "ndcg@100" ..., and NDCG@K for each K in `ks`."""
    scores: dict[str, Any] = {"relevance": "number of labels shared"}
    for k in (k for k in metrics.GRADED_TOPKS if k <= len(db_codes)):
        g = metrics.graded_metrics(q_codes, db_codes, q_labels, db_labels, topk=k)
        scores.update({f"ndcg@{k}": g.ndcg, f"acg@{k}": g.acg, f"wap@{k}": g.wap})
        scores.update({f"ndcg@{k}_tie_aware": g.tie_aware_ndcg, f"acg@{k}_tie_aware": g.tie_aware_acg})
    scores["ndcg_at_k"] = {"k": ks.tolist(), "ndcg": metrics.ndcg_at_k(q_codes, db_codes, q_labels, db_labels, ks).tolist()}
    return scores


def score(
    q_codes: np.ndarray, db_codes: np.ndarray, q_labels: np.ndarray, db_labels: np.ndarray, *, dataset: str | None = None,
    topk: int | None = None, curves: bool = True,
) -> dict[str, Any]:
    """The retrieval metrics as metrics.json holds them: the data's name and sizes, the mAP cut-off (`cutoff`), mAP and
    tie-aware mAP; with `curves` also precision@N, precision-recall by Hamming radius and, for multi-label data, the
    graded block (`graded_scores`). Codes as `sadh.sdk.metrics` takes them (packed uint8, or ±1 / bits)."""
    k, k_source = cutoff(db_labels, dataset, topk)
    result: dict[str, Any] = {"dataset": dataset, "queries": int(len(q_codes)), "database": int(len(db_codes)), "topk": k,
                              "topk_source": k_source}
    scores = metrics.mean_average_precision(q_codes, db_codes, q_labels, db_labels, topk=k)
    result.update(map=scores.map, map_tie_aware=scores.tie_aware_map)
    if not curves:
        return result
    ns = PRECISION_NS[PRECISION_NS <= len(db_codes)]
    precision, recall = metrics.precision_recall_by_radius(q_codes, db_codes, q_labels, db_labels)
    result["precision_at_n"] = {"n": ns.tolist(), "precision": metrics.precision_at_n(q_codes, db_codes, q_labels, db_labels, ns).tolist()}
    result["pr_by_radius"] = {"radius": list(range(len(precision))), "precision": _json_floats(precision), "recall": _json_floats(recall)}
    if metrics.multi_label(db_labels):
        result["graded"] = graded_scores(q_codes, db_codes, q_labels, db_labels, ns)
    return result


def grid_queries(labels: np.ndarray, count: int = GRID_QUERIES) -> np.ndarray:
    """Positions of up to `count` distinct queries for the grid (rows of `labels`): first one per class not yet shown
    (the first row of each such class), then the first other rows."""
    picked: list[int] = []
    for c in range(labels.shape[1]):
        if len(picked) < count and not labels[picked, c].any() and labels[:, c].any():
            picked.append(int(np.flatnonzero(labels[:, c])[0]))
    rest = np.setdiff1d(np.arange(len(labels)), picked)[: count - len(picked)]
    return np.array(sorted(picked) + rest.tolist(), np.int64)


def write_grid(items: GridItems, q_codes: np.ndarray, index: HammingIndex, path: Path, title: str) -> Path:
    """Retrieval grid PNG: a few queries with their top GRID_TOPK from `index` (ids = positions in items.database_ids),
    distances and labels."""
    from .atomic import atomic_write_bytes
    from .grid import encode_png, retrieval_grid

    data, q_idx, db_idx = items.data, items.query_ids, items.database_ids
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


def evaluate(
    q_codes: np.ndarray,
    db_codes: np.ndarray,
    q_labels: np.ndarray,
    db_labels: np.ndarray,
    *,
    dataset: str | None = None,
    topk: int | None = None,
    out: str | os.PathLike | None = None,
    name: str = "codes",
    title: str = "",
    grid: GridItems | None = None,
    about: Mapping[str, Any] | None = None,
    timings: Mapping[str, float] | None = None,
    on_written: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Evaluate query codes against database codes (2-D, as `sadh.sdk.metrics` takes them): `score` (mAP at the
    protocol's cut-off unless `topk`, precision@N, precision-recall, graded metrics for multi-label data) after the
    entries of `about` (e.g. the model), then the entries of `timings` (e.g. the encoding time) and the flat index's
    search time per query.

    With `out`, write there metrics.json, pr_curve.png, precision_at_n.png (a line called `name`, plots titled
    `title`), ndcg_at_k.png for multi-label data and, given `grid`, retrieval_grid.png; the writes are one step that a
    Ctrl-C waits for, and `on_written` runs inside it (e.g. to drop a partial folder). Where matplotlib is not
    installed the plots are left out, with one warning naming what to install."""
    from .atomic import atomic_write_text, written_before_interrupt
    from .index import HammingIndex
    from .plots import plot_ndcg_at_k, plot_pr_curve, plot_precision_at_n, plots_missing

    q_codes, db_codes = metrics.packed_codes(q_codes, "query codes"), metrics.packed_codes(db_codes, "database codes")
    # scored first: the metrics check the codes and labels before the index is built
    result: dict[str, Any] = {**(about or {}), **score(q_codes, db_codes, q_labels, db_labels, dataset=dataset, topk=topk)}
    out = Path(out) if out is not None else None
    index = HammingIndex(db_codes.shape[1] * 8)
    index.add(db_codes)
    search_k = min(SEARCH_K, len(db_codes))
    t0 = time.perf_counter()
    index.search(q_codes, search_k)
    search_s = time.perf_counter() - t0
    result.update(timings or {}, search_us_per_query=1e6 * search_s / len(q_codes), search_k=search_k)
    if "graded" in result:
        result["graded"] = result.pop("graded")  # last: the longest block
    if out is None:
        return result
    pan, pr = result["precision_at_n"], result["pr_by_radius"]
    unplotted = plots_missing()
    if unplotted:
        log.warning(f"{out} gets no plots ({', '.join(plot_names(result))}): {unplotted}")
    with written_before_interrupt(f"the report in {out} was written completely"):  # never half of it over another
        if not unplotted:
            plot_pr_curve({name: (pr["precision"], pr["recall"])}, out / PR_NAME, title)
            plot_precision_at_n({name: (pan["n"], pan["precision"])}, out / PAN_NAME, title)
            if "graded" in result:
                plot_ndcg_at_k({name: (pan["n"], result["graded"]["ndcg_at_k"]["ndcg"])}, out / NDCG_NAME, title)
        if grid is not None:
            write_grid(grid, q_codes, index, out / GRID_NAME, title)
        atomic_write_text(out / METRICS_NAME, json.dumps(result, indent=1))
        if on_written is not None:
            on_written()
    return result


def evaluate_model(
    encoder: Encoder,
    data: LabeledImages,
    q_idx: np.ndarray,
    db_idx: np.ndarray,
    out: str | os.PathLike,
    topk: int | None = None,
    db_codes: np.ndarray | None = None,
    progress: Progress = no_progress,
) -> dict[str, Any]:
    """Score queries `q_idx` against database items `db_idx` of `data` with an exported model (`sadh.sdk.Encoder`):
    encode them (the database resumably, in OUT/database.partial; or take its codes `db_codes`), then `evaluate` with
    the report, plots and retrieval grid written to `out`. Returns what metrics.json holds."""
    out = Path(out)
    queries = encode_items(encoder, data, q_idx, "queries", progress=progress)
    q_codes, q_idx, seconds, encoded = queries.codes, queries.ids, queries.seconds, queries.encoded
    database = None
    if db_codes is None:
        database = encode_items(encoder, data, db_idx, "database images", partial_path(out / DATABASE_CODES_NAME), progress)
        db_codes, db_idx, seconds, encoded = database.codes, database.ids, seconds + database.seconds, encoded + database.encoded
    about = {"model": str(encoder.path), "precision": encoder.precision, "bits": encoder.bits}
    return evaluate(
        q_codes, db_codes, data.labels[q_idx], data.labels[db_idx], dataset=data.name, topk=topk, out=out,
        name=encoder.precision, title=f"{data.name}, {encoder.bits} bits, {encoder.precision}", grid=GridItems(data, q_idx, db_idx),
        about=about, timings={"encode_ms_per_image": 1000 * seconds / encoded},
        on_written=database.discard_partial if database is not None else None,
    )

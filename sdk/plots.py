"""Evaluation plots (matplotlib, Agg backend, written atomically): precision-recall by Hamming radius, precision@N, NDCG@N.

matplotlib is imported on the first plot (`import sadh.sdk` stays light); without it a plot is a one-line SadhError
(`plots_missing` says so beforehand)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .atomic import atomic_write_bytes
from .errors import SadhError
from .extras import require

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 120


def plots_missing() -> str | None:
    """Why no plot can be drawn here, naming what to install (matplotlib missing or broken); None when they can."""
    try:
        require("matplotlib")
    except SadhError as e:
        return str(e)
    return None


def _figure():
    """A new (figure, axes) pair on the non-interactive Agg backend."""
    require("matplotlib").use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(5.5, 4.2))


def save_png(fig: Figure, path: Path) -> Path:
    """Write the figure as PNG to `path` atomically and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def plot_pr_curve(curves: dict[str, tuple[Sequence[float], Sequence[float]]], path: Path, title: str) -> Path:
    """Precision against recall, one line per name -> (precision, recall) over Hamming radii 0..bits."""
    fig, ax = _figure()
    for name, (precision, recall) in curves.items():
        ax.plot(np.asarray(recall, float), np.asarray(precision, float), marker=".", label=name)  # None -> NaN: no point
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02))
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_png(fig, path)


def plot_precision_at_n(curves: dict[str, tuple[Sequence[int], Sequence[float]]], path: Path, title: str) -> Path:
    """Precision of the top N results against N, one line per name -> (N values, precision)."""
    return _plot_by_n(curves, path, title, "precision@N")


def plot_ndcg_at_k(curves: dict[str, tuple[Sequence[int], Sequence[float]]], path: Path, title: str) -> Path:
    """NDCG@K (relevance = labels shared) against K, one line per name -> (K values, NDCG)."""
    return _plot_by_n(curves, path, title, "NDCG@N (relevance: labels shared)")


def _plot_by_n(curves: dict[str, tuple[Sequence[int], Sequence[float]]], path: Path, title: str, ylabel: str) -> Path:
    """A 0..1 measure of the top N results against N (log scale), one line per name -> (N values, values)."""
    fig, ax = _figure()
    for name, (ns, values) in curves.items():
        ax.plot(np.asarray(ns, float), np.asarray(values, float), marker=".", label=name)
    ax.set(xlabel="N (top results, log scale)", ylabel=ylabel, ylim=(0, 1.02), xscale="log")  # N spans 1..5000
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_png(fig, path)

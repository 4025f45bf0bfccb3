"""Draw the README's flow picture, docs/img/flow.png: labelled images -> train -> export -> index -> camera app.

    .venv/bin/python scripts/flow_diagram.py            # rewrites docs/img/flow.png
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "docs" / "img" / "flow.png"
TORCH, RUNTIME = "#dbe9f6", "#e3f4df"  # box colours: needs torch / torch-free runtime (sadh.sdk)
# (title, what it does, the command, colour); arrows between boxes carry the file handed on
STAGES = [
    ("data", "your images or\nFashion-MNIST", "sadh-cli data info", TORCH),
    ("train", "SADH, DPSH, CSQ\ntorch, multi-GPU", "sadh-cli train", TORCH),
    ("export", "ONNX FP32/FP16/INT8\nTensorRT engines", "sadh-cli export", TORCH),
    ("index", "packed codes,\nHamming index", "sadh-cli index build", RUNTIME),
    ("camera app", "Encoder + index,\na search a frame", "examples/camera_app.py", RUNTIME),
]
HANDED_ON = ["images", "best.pt", "best.int8-\ncpu.onnx", "db.sidx"]
BOX_W, BOX_H, GAP = 2.9, 1.55, 1.6


def draw(path: Path = OUT) -> Path:
    """Draw the five stages left to right with the files passed between them; return the written path."""
    fig = plt.figure(figsize=(12, 2.4), dpi=80)
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.98))
    for i, (title, body, command, colour) in enumerate(STAGES):
        x = i * (BOX_W + GAP)
        ax.add_patch(FancyBboxPatch((x, 0), BOX_W, BOX_H, boxstyle="round,pad=0.04,rounding_size=0.12", fc=colour, ec="#555555"))
        ax.text(x + BOX_W / 2, BOX_H - 0.3, title, ha="center", va="center", fontsize=13, weight="bold")
        ax.text(x + BOX_W / 2, BOX_H / 2 - 0.08, body, ha="center", va="center", fontsize=10, linespacing=1.3)
        ax.text(x + BOX_W / 2, -0.32, command, ha="center", va="center", fontsize=9, family="monospace", color="#333333")
        if i < len(HANDED_ON):
            start, end = x + BOX_W + 0.06, x + BOX_W + GAP - 0.06
            ax.annotate("", xy=(end, BOX_H / 2), xytext=(start, BOX_H / 2), arrowprops=dict(arrowstyle="-|>", color="#333333", lw=1.4))
            ax.text((start + end) / 2, BOX_H / 2 + 0.32, HANDED_ON[i], ha="center", va="center", fontsize=8.5, family="monospace",
                    bbox=dict(fc="white", ec="none", pad=0.5))
    width = len(STAGES) * BOX_W + (len(STAGES) - 1) * GAP
    ax.text(0, BOX_H + 0.35, "needs torch (sadh.train, sadh.export)", color="#2b5d8a", fontsize=10, va="center")
    ax.text(width, BOX_H + 0.35, "torch-free runtime: sadh.sdk (numpy, OpenCV, onnxruntime)", color="#2f6b2a", fontsize=10,
            va="center", ha="right")
    ax.set_xlim(-0.15, width + 0.15)
    ax.set_ylim(-0.55, BOX_H + 0.55)
    ax.axis("off")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


if __name__ == "__main__":
    print(draw())

"""The runtime's optional pieces: `import sadh.sdk` imports none of them; a missing or broken one is one line naming
what to install, raised by the first call that needs it (as on a runtime-only install or a Jetson without one)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PIECES = ("cv2", "onnxruntime", "tensorrt", "cuda", "matplotlib")
OPENCV = ("OpenCV (cv2) is not installed: pip install 'sadh[cpu]' (or 'sadh[gpu]'); on a Jetson use JetPack's OpenCV "
          "(a venv made with --system-site-packages, no pip OpenCV on top)")
ORT = ("onnxruntime is not installed: pip install 'sadh[cpu]' (CPU) or 'sadh[gpu]' (CUDA); on a Jetson use NVIDIA's "
       "onnxruntime-gpu wheel for JetPack (a venv made with --system-site-packages)")
PLOTS = "matplotlib (for the evaluation plots) is not installed: pip install matplotlib (part of 'sadh[export]')"
TRT = ("TensorRT is not installed: on a Jetson use JetPack's TensorRT (a venv made with --system-site-packages); "
       "on a CUDA desktop pip install tensorrt; or run the .onnx model")


def run_python(code: str, tmp_path: Path, blocked: tuple[str, ...] = (), path: Path | None = None) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter where the `blocked` modules are not installed (and `path` comes first)."""
    first = [str(path)] if path is not None else []
    prelude = f"import sys; sys.path[:0] = {first!r}; sys.modules.update(dict.fromkeys({blocked!r}))\n"
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, cwd=tmp_path, timeout=120)


def test_importing_the_sdk_imports_no_optional_piece(tmp_path):
    code = (
        "import importlib, pkgutil, sadh.sdk\n"
        "for m in pkgutil.walk_packages(sadh.sdk.__path__, 'sadh.sdk.'): importlib.import_module(m.name)\n"
        f"print(sorted({{k.split('.')[0] for k, m in sys.modules.items() if m is not None}} & set({PIECES!r})))\n"
    )
    out = run_python(code, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "[]\n"
    blocked = run_python(code, tmp_path, blocked=PIECES)  # and it imports with none of them installed
    assert blocked.returncode == 0 and blocked.stdout == "[]\n", blocked.stderr


@pytest.mark.parametrize(
    "call, blocked, message",
    [
        ("from sadh.sdk import preprocess, Preprocess; preprocess(np.zeros((9, 9, 3), np.uint8), Preprocess(8, 8, (0.5,) * 3, (0.25,) * 3))", ("cv2",), OPENCV),
        ("from sadh.sdk.data.images import read_image; read_image('x.onnx')", ("cv2",), OPENCV),
        ("from sadh.sdk import retrieval_grid; retrieval_grid([np.zeros((9, 9), np.uint8)], [[]], np.zeros((1, 0)))", ("cv2",), OPENCV),
        ("from sadh.sdk import Encoder; Encoder('x.onnx')", ("onnxruntime",), ORT),
        ("from sadh.sdk import Encoder; Encoder('x.engine')", ("tensorrt",), TRT),
        ("from sadh.sdk.plots import plot_pr_curve; plot_pr_curve({'a': ([1.0], [1.0])}, 'p.png', 't')", ("matplotlib",), PLOTS),
    ],
    ids=["preprocess", "read_image", "grid", "onnx-model", "engine", "plots"],
)
def test_first_call_needing_a_missing_piece_names_what_to_install(tmp_path, call, blocked, message):
    (tmp_path / "x.onnx").write_bytes(b"\x08\x07")
    (tmp_path / "x.engine").write_bytes(b"engine")
    code = f"import numpy as np\nfrom sadh.sdk.errors import SadhError\ntry:\n    {call}\nexcept SadhError as e:\n    print(e)\n"
    out = run_python(code, tmp_path, blocked)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert out.stdout == message + "\n"


def test_a_piece_that_is_installed_but_broken_is_named_with_its_reason(tmp_path):
    (tmp_path / "shadow").mkdir()
    (tmp_path / "shadow" / "cv2.py").write_text("raise ImportError('numpy.core.multiarray failed to import\\nmore detail')\n")
    code = (
        "import numpy as np\nfrom sadh.sdk.errors import SadhError\nfrom sadh.sdk.preprocess import to_rgb\n"
        "try:\n    to_rgb(np.zeros((4, 4), np.uint8))\nexcept SadhError as e:\n    print(e)\n"
    )
    out = run_python(code, tmp_path, path=tmp_path / "shadow")
    assert out.returncode == 0, out.stderr
    assert out.stdout == OPENCV.replace("is not installed:", "is installed but does not import (numpy.core.multiarray failed to import):") + "\n"

"""The runtime's optional pieces (OpenCV, an onnxruntime, TensorRT, matplotlib for plots), imported on first use.

`pip install sadh` requires only numpy, so that a Jetson keeps JetPack's own OpenCV (with GStreamer), TensorRT
and NVIDIA's onnxruntime-gpu (see docs/install.md). `import sadh.sdk` therefore imports none of them; the
first call that needs one imports it here, and a missing or broken one is a one-line SadhError naming what
to install, never an ImportError.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from .errors import SadhError, first_line

JETSON = "a venv made with --system-site-packages"  # how a Jetson's own packages are seen from a venv
PIECES = {  # module -> (what it is, what to install)
    "cv2": (
        "OpenCV (cv2)",
        f"pip install 'sadh[cpu]' (or 'sadh[gpu]'); on a Jetson use JetPack's OpenCV ({JETSON}, no pip OpenCV on top)",
    ),
    "onnxruntime": (
        "onnxruntime",
        f"pip install 'sadh[cpu]' (CPU) or 'sadh[gpu]' (CUDA); on a Jetson use NVIDIA's onnxruntime-gpu wheel for JetPack ({JETSON})",
    ),
    "tensorrt": (
        "TensorRT",
        f"on a Jetson use JetPack's TensorRT ({JETSON}); on a CUDA desktop pip install tensorrt; or run the .onnx model",
    ),
    "cuda.bindings.runtime": ("cuda-python", "pip install 'sadh[tensorrt]' (cuda-python); or run the .onnx model"),
    "matplotlib": ("matplotlib (for the evaluation plots)", "pip install matplotlib (part of 'sadh[export]')"),
}


def require(module: str, *alternatives: str) -> ModuleType:
    """Import `module` (else the first importable of `alternatives`); SadhError naming what to install if none imports."""
    what, hint = PIECES[module]
    failure = None
    for name in (module, *alternatives):
        try:
            return importlib.import_module(name)
        except ImportError as e:
            missing = isinstance(e, ModuleNotFoundError) and e.name is not None and (name + ".").startswith(e.name + ".")
            failure = failure or (None if missing else first_line(e))
    if failure is None:
        raise SadhError(f"{what} is not installed: {hint}")
    raise SadhError(f"{what} is installed but does not import ({failure[:200]}): {hint}")

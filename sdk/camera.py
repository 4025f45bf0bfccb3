"""Video sources as camera apps open them, as one OpenCV VideoCapture: a camera index (`0`) or `/dev/videoN` (V4L2),
a Jetson CSI camera (`csi://N`), a network stream (`rtsp://...`, `http(s)://...`), any GStreamer pipeline ending in
an appsink (`... ! appsink`), or a video file.

`csi://N` is the pipeline Jetson projects use (JetsonHacks' CSI-Camera, NVIDIA's samples): `nvarguscamerasrc` into
NVMM memory at the requested size and rate, `nvvidconv` out to BGRx, `videoconvert` to BGR for OpenCV, and an appsink
that keeps only the newest frame (a model slower than the camera reads the present, not a growing backlog). It needs
OpenCV built with GStreamer: JetPack's own, seen from a venv made with --system-site-packages. PyPI's OpenCV has no
GStreamer, so that case is refused in one line before anything is opened.
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from typing import Iterator

from .errors import SadhError
from .extras import require

CSI_DEFAULT = (1920, 1080, 30)  # width, height, fps: a mode of the common Jetson CSI sensors (IMX219, IMX477)
STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
NEEDS_JETPACK_OPENCV = (
    "needs OpenCV built with GStreamer, and this one ({where}) has none: on a Jetson use JetPack's OpenCV "
    "(a venv made with --system-site-packages, and no pip OpenCV on top: pip uninstall opencv-python-headless)"
)


@dataclass(frozen=True)
class Source:
    """How one source opens: `cv2.VideoCapture(target, cv2.CAP_<backend>)`, then the capture properties `props`."""

    text: str
    target: str | int
    backend: str = "ANY"  # ANY | V4L2 | GSTREAMER
    props: dict[str, float] = field(default_factory=dict)  # CAP_PROP_<name> -> value


def csi_pipeline(sensor_id: int, width: int, height: int, fps: int) -> str:
    """The GStreamer pipeline of CSI camera `sensor_id` on a Jetson, BGR frames of width x height at fps."""
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM),width={width},height={height},framerate={fps}/1 ! "
        "nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1"
    )


def parse_source(text: str, width: int | None = None, height: int | None = None, fps: int | None = None) -> Source:
    """The `Source` for `text` (see the module docstring); width/height/fps apply to cameras only (else SadhError)."""
    text = str(text)
    wanted = {"FRAME_WIDTH": width, "FRAME_HEIGHT": height, "FPS": fps}
    for name, value in wanted.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise SadhError(f"{name.lower().replace('frame_', '')} must be a positive integer, got {value!r}")
    props = {k: float(v) for k, v in wanted.items() if v is not None}
    csi = re.fullmatch(r"csi://(\d+)", text)
    device = re.fullmatch(r"/dev/video(\d+)", text)
    if csi:
        w, h, f = (given or default for given, default in zip((width, height, fps), CSI_DEFAULT))
        return Source(text, csi_pipeline(int(csi.group(1)), w, h, f), "GSTREAMER")
    if text.isdigit() or device:
        return Source(text, int(text) if text.isdigit() else text, "ANY" if text.isdigit() else "V4L2", props)
    if props:
        raise SadhError(f"width, height and fps apply to cameras (an index, /dev/videoN, csi://N), not to {text!r}")
    if "!" in text:
        if not re.search(r"\bappsink\b", text):
            raise SadhError(f"a GStreamer pipeline for OpenCV must end in an appsink, got {text!r}")
        return Source(text, text, "GSTREAMER")
    if text.startswith(STREAM_SCHEMES):
        return Source(text, text)
    if "://" in text:
        raise SadhError(f"unknown video source scheme in {text!r} (use csi://N, rtsp://, http(s)://, a camera index or a file)")
    if not os.path.isfile(text):
        raise SadhError(f"cannot open video {text!r}: no such file")
    return Source(text, text)


def has_gstreamer(build_information: str) -> bool:
    """Whether OpenCV's build information (`cv2.getBuildInformation()`) lists GStreamer as built in."""
    return re.search(r"^\s*GStreamer:\s*YES\b", build_information, re.MULTILINE) is not None


@contextlib.contextmanager
def held_stderr() -> Iterator[list[bytes]]:
    """Hold what native code writes to stderr meanwhile, in the yielded list (filled on exit). Nothing is held when the
    user set OPENCV_LOG_LEVEL: OpenCV's own messages then stay as they chose."""
    held: list[bytes] = []
    if "OPENCV_LOG_LEVEL" in os.environ:
        yield held
        return
    with tempfile.TemporaryFile() as file:
        saved = os.dup(2)
        os.dup2(file.fileno(), 2)
        try:
            yield held
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            file.seek(0)
            held.append(file.read())


def open_source(text: str, width: int | None = None, height: int | None = None, fps: int | None = None):
    """An opened cv2.VideoCapture on `text` (see `parse_source`); SadhError (one line) if it cannot be opened."""
    source = parse_source(text, width, height, fps)
    cv2 = require("cv2")
    if source.backend == "GSTREAMER" and not has_gstreamer(cv2.getBuildInformation()):
        raise SadhError(f"{text} " + NEEDS_JETPACK_OPENCV.format(where=f"OpenCV {cv2.__version__} at {os.path.dirname(cv2.__file__)}"))
    with held_stderr() as output:
        capture = cv2.VideoCapture(source.target, getattr(cv2, f"CAP_{source.backend}"))
    if not capture.isOpened():  # our one line instead of what OpenCV's backends printed while each one tried
        raise SadhError(f"cannot open camera or video {text!r}")
    os.write(2, b"".join(output))  # opened: OpenCV's warnings, if any, are the user's to see
    for name, value in source.props.items():
        capture.set(getattr(cv2, f"CAP_PROP_{name}"), value)
    return capture

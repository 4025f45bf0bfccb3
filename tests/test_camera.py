"""Video sources (sadh.sdk.camera): the Jetson CSI pipeline, what each source string opens with, the one-line refusal
of GStreamer sources by an OpenCV without GStreamer, and real frames from a video file."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from sadh.sdk import camera
from sadh.sdk.camera import Source, csi_pipeline, has_gstreamer, open_source, parse_source
from sadh.sdk.errors import SadhError

NO_GSTREAMER = "needs OpenCV built with GStreamer, and this one (OpenCV {v} at {d}) has none: on a Jetson use JetPack's OpenCV " \
    "(a venv made with --system-site-packages, and no pip OpenCV on top: pip uninstall opencv-python-headless)"


def test_csi_pipeline_is_the_jetson_one():
    assert csi_pipeline(1, 1280, 720, 60) == (
        "nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM),width=1280,height=720,framerate=60/1 ! nvvidconv ! "
        "video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1"
    )
    assert parse_source("csi://0") == Source("csi://0", csi_pipeline(0, 1920, 1080, 30), "GSTREAMER")
    assert parse_source("csi://2", width=640, height=480) == Source("csi://2", csi_pipeline(2, 640, 480, 30), "GSTREAMER")


def test_each_source_opens_with_its_backend(tmp_path):
    clip = tmp_path / "clip.avi"
    clip.write_bytes(b"")
    pipeline = "rtspsrc location=rtsp://cam/live latency=200 ! decodebin ! videoconvert ! appsink"
    assert parse_source("0") == Source("0", 0)
    assert parse_source("3", width=640, height=480, fps=15) == Source("3", 3, "ANY", {"FRAME_WIDTH": 640.0, "FRAME_HEIGHT": 480.0, "FPS": 15.0})
    assert parse_source("/dev/video2", fps=30) == Source("/dev/video2", "/dev/video2", "V4L2", {"FPS": 30.0})
    assert parse_source("rtsp://cam:554/live") == Source("rtsp://cam:554/live", "rtsp://cam:554/live")
    assert parse_source("https://host/clip.mp4") == Source("https://host/clip.mp4", "https://host/clip.mp4")
    assert parse_source(pipeline) == Source(pipeline, pipeline, "GSTREAMER")
    assert parse_source(str(clip)) == Source(str(clip), str(clip))


@pytest.mark.parametrize(
    "text, size, message",
    [
        ("missing.avi", {}, "cannot open video 'missing.avi': no such file"),
        ("CLIP", {"width": 640}, "width, height and fps apply to cameras (an index, /dev/videoN, csi://N), not to 'CLIP'"),
        ("rtsp://cam/live", {"fps": 30}, "width, height and fps apply to cameras (an index, /dev/videoN, csi://N), not to 'rtsp://cam/live'"),
        ("ftp://host/clip.avi", {}, "unknown video source scheme in 'ftp://host/clip.avi' (use csi://N, rtsp://, http(s)://, a camera index or a file)"),
        ("videotestsrc ! videoconvert", {}, "a GStreamer pipeline for OpenCV must end in an appsink, got 'videotestsrc ! videoconvert'"),
        ("csi://0", {"width": 0}, "width must be a positive integer, got 0"),
        ("0", {"fps": 2.5}, "fps must be a positive integer, got 2.5"),
    ],
)
def test_bad_sources_are_one_line(tmp_path, text, size, message):
    clip = tmp_path / "clip.avi"
    clip.write_bytes(b"")
    with pytest.raises(SadhError) as e:
        parse_source(str(clip) if text == "CLIP" else text, **size)
    assert str(e.value) == message.replace("CLIP", str(clip))


def test_gstreamer_is_read_from_the_build_information():
    jetpack = "  Video I/O:\n    DC1394:                      NO\n    FFMPEG:                      NO\n    GStreamer:                   YES (1.20.3)\n"
    pypi = "  Video I/O:\n    FFMPEG:                      YES\n    GStreamer:                   NO\n"
    assert has_gstreamer(jetpack) and not has_gstreamer(pypi) and not has_gstreamer("")


@pytest.mark.parametrize("text", ["csi://0", "videotestsrc num-buffers=3 ! videoconvert ! appsink"])
def test_gstreamer_source_without_gstreamer_names_jetpacks_opencv(monkeypatch, text):
    without = "\n".join(line for line in cv2.getBuildInformation().splitlines() if "GStreamer" not in line) + "\n    GStreamer: NO\n"
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: without)
    opened = []
    monkeypatch.setattr(cv2, "VideoCapture", lambda *a: opened.append(a))
    with pytest.raises(SadhError) as e:
        open_source(text)
    assert str(e.value) == f"{text} " + NO_GSTREAMER.format(v=cv2.__version__, d=camera.os.path.dirname(cv2.__file__))
    assert not opened  # refused before OpenCV tried


def test_frames_of_a_video_file(tmp_path, fashion_small):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    assert writer.isOpened()
    written = [cv2.cvtColor(cv2.resize(fashion_small.image(i), (64, 48)), cv2.COLOR_GRAY2BGR) for i in range(0, 200, 20)]
    for frame in written:
        writer.write(frame)
    writer.release()
    capture = open_source(str(path))
    frames = []
    while (read := capture.read())[0]:
        frames.append(read[1])
    capture.release()
    assert len(frames) == len(written) and all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in frames)
    assert all(np.abs(f.astype(int) - w).mean() < 8 for f, w in zip(frames, written))  # the same pictures (MJPG is lossy)


@pytest.mark.parametrize("text", ["7", "/dev/video9"])
def test_a_camera_that_is_not_there_is_one_line(capfd, monkeypatch, text):
    monkeypatch.delenv("OPENCV_LOG_LEVEL", raising=False)
    with pytest.raises(SadhError) as e:
        open_source(text)
    assert str(e.value) == f"cannot open camera or video {text!r}"
    assert capfd.readouterr().err == ""  # not OpenCV's backends' attempts

"""examples/camera_app.py on a real MJPG video made of indexed items: every frame finds its own item at distance 0."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from sadh.sdk.encoder import Encoder
from sadh.sdk.index import HammingIndex
from sadh.sdk import Sidecar, sidecar_path
from tiny_model import export_tiny

APP = Path(__file__).resolve().parents[1] / "examples" / "camera_app.py"
FRAME = 96
N_ITEMS = 24


def write_video(path: Path, frames: list[np.ndarray]) -> list[np.ndarray]:
    """Write BGR frames as an MJPG .avi and return the frames as OpenCV decodes them back."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (FRAME, FRAME))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()
    capture, decoded = cv2.VideoCapture(str(path)), []
    while True:
        ok, f = capture.read()
        if not ok:
            break
        decoded.append(f)
    capture.release()
    return decoded


def test_camera_app_matches_every_frame(tmp_path, fashion_small):
    model = tmp_path / "model.onnx"
    export_tiny(model, bits=32)
    encoder = Encoder(model)
    items = np.arange(0, len(fashion_small), len(fashion_small) // N_ITEMS)[:N_ITEMS]
    frames = [cv2.cvtColor(cv2.resize(fashion_small.image(i), (FRAME, FRAME)), cv2.COLOR_GRAY2BGR) for i in items]
    decoded = write_video(tmp_path / "clip.avi", frames)
    assert len(decoded) == len(frames)

    codes = encoder.encode(decoded)
    unique = [j for j in range(len(codes)) if (codes == codes[j]).all(1).sum() == 1]  # frames whose code is theirs alone
    assert len(unique) >= N_ITEMS // 2
    ids = 1000 + items  # ids need not be positions
    index = HammingIndex(encoder.bits)
    index.add(codes, ids)
    index.save(tmp_path / "db.sidx")
    labels = [np.flatnonzero(fashion_small.labels[i]).tolist() for i in items]
    Sidecar(ids=ids.tolist(), labels=labels, class_names=fashion_small.class_names).save(sidecar_path(tmp_path / "db.sidx"))

    runs = [
        subprocess.run(
            [sys.executable, str(APP), str(tmp_path / "clip.avi"), "--model", str(model), "--index", str(tmp_path / "db.sidx"),
             "--max-frames", str(N_ITEMS - 2), *flags],
            capture_output=True, text=True, timeout=120,
        )
        for flags in ([], ["--mih"])
    ]
    assert all(out.returncode == 0 for out in runs), [out.stderr for out in runs]
    flat, mih = ([re.sub(r" \([\d.]+ ms\)$", "", line) for line in out.stdout.splitlines() if line.startswith("frame ")] for out in runs)
    assert mih == flat  # multi-index hashing finds the same matches
    lines = flat
    assert len(lines) == N_ITEMS - 2  # --max-frames stops early
    for line in lines:
        frame_no, id_, dist = map(int, re.match(r"frame (\d+) id (\d+) distance (\d+)", line).groups())
        assert dist == 0
        if frame_no in unique:
            assert id_ == ids[frame_no]
            assert fashion_small.class_names[labels[frame_no][0]] in line


def assert_refused(out: subprocess.CompletedProcess, message: str) -> None:
    """Exit code 2 and `message` as the last line on stderr (OpenCV may log its own lines before it), no traceback."""
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.splitlines()[-1:] == [message], out.stderr


def test_camera_app_bad_source(tmp_path):
    model = tmp_path / "model.onnx"
    export_tiny(model, bits=16)
    HammingIndex(16).save(tmp_path / "empty.sidx")
    out = subprocess.run(
        [sys.executable, str(APP), str(tmp_path / "nope.avi"), "--model", str(model), "--index", str(tmp_path / "empty.sidx")],
        capture_output=True, text=True, timeout=60,
    )
    assert_refused(out, f"error: cannot open video {str(tmp_path / 'nope.avi')!r}: no such file")
    (tmp_path / "fake.avi").write_bytes(b"not a video")
    out = subprocess.run(
        [sys.executable, str(APP), str(tmp_path / "fake.avi"), "--model", str(model), "--index", str(tmp_path / "empty.sidx")],
        capture_output=True, text=True, timeout=60,
    )
    assert_refused(out, f"error: cannot open camera or video {str(tmp_path / 'fake.avi')!r}")


def test_camera_app_ctrl_c_is_one_line(monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("camera_app", APP)
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)

    def interrupted(*args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(app, "run", interrupted)
    assert app.main(["0", "--model", "m.onnx", "--index", "db.sidx"]) == 130
    assert capsys.readouterr().err == "interrupted\n"

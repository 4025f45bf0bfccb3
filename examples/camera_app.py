"""Camera app example: encode each frame of a camera or video file and print its best match in a Hamming index.

    python examples/camera_app.py --model model.int8-cpu.onnx --index index.sidx 0            # camera 0
    python examples/camera_app.py --model model.onnx --index index.sidx clip.avi --max-frames 100 --mih
    python examples/camera_app.py --model model.onnx --index index.sidx csi://0 --width 1280 --height 720 --fps 30  # Jetson

Uses only the torch-free runtime (`sadh.sdk`): Encoder + a Hamming index (flat, or multi-index hashing with
--mih: same matches, faster on large indexes of trained codes), and the index sidecar for labels/paths.
"""
from __future__ import annotations

import argparse
import sys
import time

from sadh.sdk.camera import open_source
from sadh.sdk.encoder import Encoder
from sadh.sdk.errors import SadhError
from sadh.sdk.printable import printable
from sadh.sdk import Retriever, Sidecar, load_index, sidecar_path


def run(
    model: str, index_path: str, source: str, max_frames: int | None, kind: str = "flat", size: tuple[int | None, ...] = (None,) * 3
) -> int:
    """Match frames until the source ends or max_frames; print one line per frame; return the frame count.
    `size`: (width, height, fps) asked of a camera (None: its default; csi://N: 1920x1080 at 30)."""
    retriever = Retriever(Encoder(model, max_batch=1), load_index(index_path, kind, mmap=True))
    side = Sidecar.load(sidecar_path(index_path)) if sidecar_path(index_path).is_file() else None
    capture = open_source(source, *size)
    frame_no = 0
    try:
        while max_frames is None or frame_no < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            t0 = time.perf_counter()
            distances, ids = retriever.query(frame, k=1)
            ms = 1000 * (time.perf_counter() - t0)
            if len(ids):
                what = side.describe(ids[0]) if side else ""
                print(f"frame {frame_no} id {ids[0]} distance {distances[0]} {printable(what)} ({ms:.1f} ms)", flush=True)
            else:
                print(f"frame {frame_no} no match (empty index) ({ms:.1f} ms)", flush=True)
            frame_no += 1
    finally:
        capture.release()
    return frame_no


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run; user errors print one line and return 2."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "source", help="camera index (0, 1, ...), /dev/videoN, csi://N (Jetson CSI camera), rtsp://..., a GStreamer pipeline ending in appsink, or a video file"
    )
    parser.add_argument("--model", required=True, help="exported model (.onnx or TensorRT .engine)")
    parser.add_argument("--index", required=True, help="index file from `sadh-cli index build`")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    parser.add_argument("--mih", action="store_true", help="search with multi-index hashing (large indexes of trained codes)")
    for name in ("width", "height", "fps"):
        parser.add_argument(f"--{name}", type=int, default=None, help=f"camera {name} (cameras only; csi://N default: 1920x1080 at 30)")
    args = parser.parse_args(argv)
    try:
        size = (args.width, args.height, args.fps)
        count = run(args.model, args.index, args.source, args.max_frames, "mih" if args.mih else "flat", size)
    except SadhError as e:
        print(f"error: {printable(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C is how a camera loop is stopped
        print("interrupted", file=sys.stderr)
        return 130
    print(f"{count} frames", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Writers of an index lose nothing: concurrent writers serialise, a writer killed between files leaves the old or the
new index/sidecar pair, and a full disk fails in one line with every previous file intact and no temporary left."""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from sadh.cli.app import app
from sadh.sdk.atomic import atomic_open, atomic_write_bytes
from sadh.sdk.errors import SadhError
from sadh.sdk.index import HammingIndex
from sadh.sdk import Sidecar, sidecar_path
from cli_run import assert_user_error, cli
from small_disk import small_disk  # noqa: F401 - the fixture
from tiny_model import export_tiny

SLOW_CLI = """
import sys, time
from sadh.sdk.encoder import Encoder
encode_files = Encoder.encode_files
Encoder.encode_files = lambda self, paths: (time.sleep({delay}), encode_files(self, paths))[1]  # a long encoding
from sadh.cli.app import main
sys.argv[0] = "sadh-cli"
main()
"""


def _images(folder: Path, n: int, seed: int) -> Path:
    """`n` random 28 x 28 PNGs in `folder`."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for j in range(n):
        cv2.imwrite(str(folder / f"{j}.png"), rng.integers(0, 255, (28, 28, 3), dtype=np.uint8))
    return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """A tiny model, an index built from 2 x 6 images (8 in the database role) and two folders of new images."""
    d = tmp_path_factory.mktemp("writers")
    export_tiny(d / "model.onnx", bits=32)
    for c in ("a", "b"):
        _images(d / "images" / c, 6, seed=ord(c))
    out = cli("index", "build", "-m", d / "model.onnx", "--data", d / "images", "--query-per-class", "1",
              "--train-per-class", "1", "-o", d / "db.sidx")
    assert out.returncode == 0, out.stderr
    return {"dir": d, "index": d / "db.sidx", "new0": _images(d / "new0", 7, 1), "new1": _images(d / "new1", 9, 2)}


def _copy_pair(built: dict[str, Path], folder: Path) -> Path:
    """A copy of the built index and its sidecar in `folder`."""
    index = folder / "db.sidx"
    index.write_bytes(built["index"].read_bytes())
    sidecar_path(index).write_bytes(sidecar_path(built["index"]).read_bytes())
    return index


def _slow_cli(*args: object, delay: float = 2.0) -> subprocess.Popen:
    """Start `sadh-cli ARGS` whose encoding takes `delay` s more (holding the index for that long)."""
    code = SLOW_CLI.format(delay=delay)
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_concurrent_index_adds_keep_both_sets(built, tmp_path):
    index = _copy_pair(built, tmp_path)
    before = len(HammingIndex.load(index))
    runs = [_slow_cli("index", "add", built[name], "-i", index, delay=3.0) for name in ("new0", "new1")]  # both start at once
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
    hindex, side = HammingIndex.load(index), Sidecar.load(sidecar_path(index))
    assert len(hindex) == before + 7 + 9  # neither run's images were lost
    assert side.ids == hindex.ids.tolist() and len(set(side.paths)) == len(side.paths) == len(hindex)


def test_a_second_writer_waits_then_fails_in_one_line_while_readers_go_on(built, tmp_path):
    index = _copy_pair(built, tmp_path)
    kept = index.read_bytes(), sidecar_path(index).read_bytes()
    writer = _slow_cli("index", "add", built["new0"], "-i", index, delay=4.0)
    _wait_until_locked(index)  # the writer holds the index now (it encodes)
    env = {**os.environ, "SADH_LOCK_TIMEOUT": "0.5"}
    other = subprocess.run([sys.executable, "-m", "sadh.cli.app", "index", "remove", "0", "-i", str(index)],
                           capture_output=True, text=True, env=env)
    assert_user_error(other, "is being written by another process")
    assert (index.read_bytes(), sidecar_path(index).read_bytes()) == kept  # the refused writer wrote nothing
    info = cli("index", "info", index)  # readers take no lock
    assert info.returncode == 0 and "codes" in info.stdout, info.stderr
    assert writer.wait(timeout=120) == 0, writer.stderr.read()
    assert len(HammingIndex.load(index)) == len(HammingIndex.load(built["index"])) + 7


def _wait_until_locked(index: Path, seconds: float = 60.0) -> None:
    """Return once another process holds the writer lock of `index` (its lock file beside it)."""
    lock = index.with_name(index.name + ".lock")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if lock.exists():
            with open(lock, "rb") as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return
                fcntl.flock(f, fcntl.LOCK_UN)
        time.sleep(0.05)
    raise AssertionError(f"no process locked {index} within {seconds} s")


def test_saving_over_a_file_another_writer_changed_refuses(tmp_path):
    path = tmp_path / "db.sidx"
    HammingIndex(16).save(path)
    first, second = HammingIndex.load(path), HammingIndex.load(path)  # two writers read the same file
    first.add(np.ones((3, 2), np.uint8))
    first.save(path)
    second.add(np.zeros((2, 2), np.uint8))
    with pytest.raises(SadhError, match="was changed by another writer since this index was loaded"):
        second.save(path)
    assert len(HammingIndex.load(path)) == 3  # the first writer's codes are kept
    again = HammingIndex.load(path)
    again.add(np.zeros((2, 2), np.uint8))
    again.save(path)
    again.remove([0])
    again.save(path)  # its own saves do not count as another writer's
    assert len(HammingIndex.load(path)) == 4


# A writer of an index and its sidecar that dies (os._exit: no cleanup runs, as with kill -9) at its Nth rename or
# fsync - every point between "nothing written" and "both files renamed into place".
CRASHING_WRITER = """
import os, sys
import numpy as np
from sadh.sdk.indexing import save_index
from sadh.sdk.index import HammingIndex
from sadh.sdk import Sidecar, sidecar_path

path, crash_at = sys.argv[1], int(sys.argv[2])
calls = [0]

def dying(real):
    def step(*args, **kwargs):
        calls[0] += 1
        if calls[0] == crash_at:
            os._exit(9)
        return real(*args, **kwargs)
    return step

index, side = HammingIndex.load(path), Sidecar.load(sidecar_path(path))
ids = index.add(np.full((5, 4), 7, np.uint8))
side = Sidecar(ids=side.ids + ids.tolist(), labels=side.labels + [[1]] * 5, class_names=side.class_names,
               paths=side.paths + [f"/new/{i}.png" for i in ids])
os.replace, os.fsync = dying(os.replace), dying(os.fsync)
save_index(index, side, path)
"""


def _state(index: Path) -> list[int]:
    """The ids of the index, after checking its sidecar is the one written for it (a torn pair raises SadhError)."""
    hindex, side = HammingIndex.load(index), Sidecar.load(sidecar_path(index))
    assert side.ids == hindex.ids.tolist() and len(side.paths) == len(hindex)
    return side.ids


def test_a_writer_killed_at_any_step_leaves_the_old_or_the_new_pair(built, tmp_path):
    old = _state(built["index"])
    new = old + list(range(max(old) + 1, max(old) + 6))
    seen = []
    for crash_at in range(1, 30):
        folder = tmp_path / str(crash_at)
        folder.mkdir()
        index = _copy_pair(built, folder)
        run = subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(index), str(crash_at)], capture_output=True, text=True)
        assert run.returncode in (0, 9), run.stderr
        state = _state(index)
        assert state in (old, new), crash_at
        seen.append("new" if state == new else "old")
        hindex = HammingIndex.load(index)  # the next writer goes on from that state and tidies up after the killed one
        side = Sidecar.load(sidecar_path(index))
        hindex.remove([state[0]])
        save_pair(hindex, without_first(side), index)
        assert _state(index) == state[1:]
        assert sorted(p.name for p in folder.iterdir()) == ["db.sidx", "db.sidx.json", "db.sidx.lock"]
        if run.returncode == 0:
            break
    assert run.returncode == 0 and seen[0] == "old" and seen[-1] == "new" and len(seen) >= 4, seen


def save_pair(hindex: HammingIndex, side: Sidecar, index: Path) -> None:
    """Write an index and its sidecar as `sadh-cli index add/remove` do."""
    from sadh.sdk.indexing import save_index

    save_index(hindex, side, index)


def without_first(side: Sidecar) -> Sidecar:
    """`side` without its first item."""
    return Sidecar(ids=side.ids[1:], labels=side.labels[1:], class_names=side.class_names, paths=side.paths[1:])


KILLED_WRITER = """
import sys
import numpy as np
from sadh.sdk.indexing import save_index
from sadh.sdk.index import HammingIndex
from sadh.sdk import Sidecar

path, n = sys.argv[1], int(sys.argv[2])
codes = np.random.default_rng(0).integers(0, 256, (n, 8), dtype=np.uint8)

def pair(m):
    index = HammingIndex(64)
    index.add(codes[:m])
    return index, Sidecar(ids=list(range(m)), labels=[[0]] * m, class_names=["c"], paths=[f"/p/{i:07d}.png" for i in range(m)])

save_index(*pair(n), path)
print("writing", flush=True)
for round in range(1, 10**6):  # alternately n and n - 1 items, until killed
    save_index(*pair(n - round % 2), path)
"""


def test_kill_9_while_writing_never_tears_the_pair(tmp_path):
    n = 100_000
    index = tmp_path / "db.sidx"
    for delay in (0.05, 0.13, 0.21, 0.34, 0.55, 0.89):
        writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(index), str(n)], stdout=subprocess.PIPE, text=True)
        assert writer.stdout.readline() == "writing\n"  # the first pair is written
        time.sleep(delay)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        assert len(_state(index)) in (n, n - 1)


def test_a_disk_too_full_for_a_write_fails_in_one_line_and_keeps_the_old_file(small_disk):
    target = small_disk.folder / "out.bin"
    atomic_write_bytes(target, b"old")
    small_disk.fill(free=50_000)
    with pytest.raises(SadhError) as caught:
        atomic_write_bytes(target, b"x" * 200_000)  # a write of known size: refused before it starts
    message = str(caught.value)
    assert f"cannot write {target}: no space left on the disk (needs 200.0 kB" in message and "\n" not in message
    with pytest.raises(SadhError, match=r"out\.bin: no space left on the disk \(needs more than the .* written"):
        with atomic_open(target) as f:  # a write of unknown size: fails when the disk fills
            for _ in range(100):
                f.write(b"y" * 10_000)
    assert target.read_bytes() == b"old" and small_disk.names() == ["out.bin"]  # no temporary left


def test_index_save_on_a_full_disk_keeps_the_old_index(small_disk):
    path = small_disk.folder / "db.sidx"
    old = HammingIndex(64)
    old.add(np.zeros((10, 8), np.uint8))
    old.save(path)
    small_disk.fill(free=20_000)
    new = HammingIndex.load(path)
    new.add(np.ones((5000, 8), np.uint8))
    with pytest.raises(SadhError, match=r"db\.sidx: no space left on the disk \(needs 80\.2 kB"):
        new.save(path)
    assert np.array_equal(HammingIndex.load(path).codes, old.codes) and small_disk.names() == ["db.sidx", "db.sidx.lock"]


def test_index_add_on_a_full_disk_keeps_the_pair(small_disk, built, tmp_path):
    index = small_disk.folder / "db.sidx"
    hindex = HammingIndex(32)
    hindex.add(np.zeros((2000, 4), np.uint8))
    long_paths = [f"/photos/{'x' * 80}/{i:05d}.png" for i in range(2000)]  # a sidecar ten times the index
    side = Sidecar(ids=list(range(2000)), labels=[[0]] * 2000, class_names=["a"], paths=long_paths,
                   model=str(built["dir"] / "model.onnx"))
    save_pair(hindex, side, index)
    kept = index.read_bytes(), sidecar_path(index).read_bytes()
    small_disk.fill(free=len(kept[0]) + 30_000)  # room for the new index, not for its sidecar
    result = CliRunner().invoke(app, ["index", "add", str(built["new0"]), "-i", str(index)])
    assert isinstance(result.exception, SadhError), result.output
    assert "no space left on the disk" in str(result.exception) and "db.sidx.json" in str(result.exception)
    assert (index.read_bytes(), sidecar_path(index).read_bytes()) == kept
    assert small_disk.names() == ["db.sidx", "db.sidx.json", "db.sidx.lock"]  # no pending sidecar, no temporary


def test_encode_on_a_full_disk_keeps_the_earlier_codes(small_disk, built):
    out = small_disk.folder / "codes.npy"
    images = built["new0"]
    first = CliRunner().invoke(app, ["encode", str(images), "-m", str(built["dir"] / "model.onnx"), "-o", str(out)])
    assert first.exit_code == 0, first.output
    kept = out.read_bytes(), out.with_suffix(".txt").read_bytes()
    small_disk.fill(free=0)
    result = CliRunner().invoke(app, ["encode", str(images), str(built["new1"]), "-m", str(built["dir"] / "model.onnx"), "-o", str(out)])
    assert isinstance(result.exception, SadhError) and "no space left on the disk" in str(result.exception), result.output
    assert (out.read_bytes(), out.with_suffix(".txt").read_bytes()) == kept
    assert small_disk.names() == ["codes.npy", "codes.txt"]  # no temporary, no partial folder


def test_files_written_together_stay_old_together_when_the_disk_fills(small_disk):
    from sadh.sdk.atomic import atomic_write_all

    codes, listing = small_disk.folder / "codes.npy", small_disk.folder / "codes.txt"  # as `encode` writes them
    atomic_write_all({codes: b"old codes", listing: b"old list"})
    small_disk.fill(free=3 * 4096)  # room for the first (a page of a tmpfs), not for the second
    with pytest.raises(SadhError, match=r"codes\.txt: no space left on the disk"):
        atomic_write_all({codes: b"new codes", listing: b"new list" * 2000})
    assert (codes.read_bytes(), listing.read_bytes()) == (b"old codes", b"old list")  # not one new, one old
    assert small_disk.names() == ["codes.npy", "codes.txt"]


def test_a_sidecar_left_pending_by_a_killed_writer_is_read_as_the_new_one(tmp_path):
    path = tmp_path / "db.sidx"
    index = HammingIndex(16)
    index.add(np.zeros((2, 2), np.uint8))
    index.save(path)
    Sidecar(ids=[0, 1], labels=[[0], [0]], class_names=["a"]).save(sidecar_path(path))
    index.add(np.ones((1, 2), np.uint8))  # a writer staged the new sidecar, renamed the new index, and was killed
    new_side = {"ids": [0, 1, 2], "labels": [[0], [0], [1]], "class_names": ["a", "b"]}

    def stage(digest: str) -> None:
        (tmp_path / f"db.sidx.json.{digest}.pending").write_text(json.dumps({**new_side, "index_digest": digest}))

    index.save(path, before_replace=stage)
    assert Sidecar.load(sidecar_path(path)).label_names(2) == ["b"] and Sidecar.of_index(path).ids == [0, 1, 2]
    out = cli("index", "info", path)
    assert out.returncode == 0 and "a, b" in out.stdout, out.stderr


def test_the_lock_timeout_setting_is_checked(built, tmp_path):
    index = _copy_pair(built, tmp_path)
    env = {**os.environ, "SADH_LOCK_TIMEOUT": "soon"}
    out = subprocess.run([sys.executable, "-m", "sadh.cli.app", "index", "remove", "0", "-i", str(index)],
                         capture_output=True, text=True, env=env)
    assert_user_error(out, "SADH_LOCK_TIMEOUT must be a number of seconds >= 0, got 'soon'")


def test_writer_lock_is_reentrant_and_excludes_other_threads(tmp_path):
    import threading

    from sadh.sdk.locking import writer_lock

    path = tmp_path / "x.sidx"
    with writer_lock(path), writer_lock(path):  # re-entrant: save() inside a held lock does not deadlock
        errors: list[str] = []
        thread = threading.Thread(target=lambda: errors.append(_try_lock(path)))
        thread.start()
        thread.join()
    assert errors and "is being written by another process" in errors[0]
    with writer_lock(path, timeout=0):  # released: free again
        pass


def _try_lock(path: Path) -> str:
    """Take the writer lock of `path` without waiting; the error message when that fails."""
    from sadh.sdk.locking import writer_lock

    try:
        with writer_lock(path, timeout=0.1):
            return ""
    except SadhError as e:
        return str(e)



def test_export_on_a_full_disk_keeps_the_earlier_models(small_disk, tmp_path):
    from sadh.export.api import export_model
    from test_export import write_checkpoint

    ckpt = write_checkpoint(tmp_path / "m.pt")
    out = small_disk.folder
    (out / "m.onnx").write_bytes(b"an earlier model")
    small_disk.fill(free=20_000)
    with pytest.raises(SadhError, match=r"m\.onnx: no space left on the disk \(needs .* free in"):
        export_model(ckpt, out, parity_images=16)
    assert (out / "m.onnx").read_bytes() == b"an earlier model" and small_disk.names() == ["m.onnx"]  # no staging folder

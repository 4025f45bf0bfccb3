"""Atomic writes: the old file survives a failed write; new files get the usual permissions."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sadh.sdk.atomic import atomic_open, atomic_write_text, make_folder
from sadh.sdk.errors import SadhError


def test_failed_write_keeps_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_open(target, "wb") as f:
            f.write(b"half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary left behind


def test_permissions_follow_umask(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "report.json"
    atomic_write_text(target, "{}")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o666 & ~mask  # not mkstemp's private 0600


def test_unwritable_targets_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "list.txt").write_text("a file")
    with pytest.raises(SadhError, match=r"cannot write .*folder: it is a folder, not a file"):
        atomic_write_text(tmp_path / "folder", "x")
    with pytest.raises(SadhError, match=r"cannot write .*list\.txt/x\.sidx: .*list\.txt is a file, not a folder"):
        atomic_write_text(tmp_path / "list.txt" / "x.sidx", "x")
    with pytest.raises(SadhError, match=r"list\.txt: it is a file, not a folder"):
        make_folder(tmp_path / "list.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "list.txt"]  # no temporary left behind


def test_failed_rename_is_one_line_error_and_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")

    def refuse(src: object, dst: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(SadhError, match=r"cannot write .*out\.txt: Permission denied"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


@pytest.mark.torch  # the training layer's cache
def test_image_cache_is_written_like_every_other_file(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    from sadh.sdk.data import read_image_folder
    from sadh.train.cache import cache_images

    for k in range(3):
        (tmp_path / "imgs" / f"c{k % 2}").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "imgs" / f"c{k % 2}" / f"{k}.png"), np.full((8, 8, 3), 40 * k, np.uint8))
    data = read_image_folder(tmp_path / "imgs")
    images = cache_images(data, np.arange(3), 16, cache_dir=tmp_path / "cache")
    (cached,) = (tmp_path / "cache").iterdir()  # the memmap, renamed into place: no temporary left behind
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(cached).st_mode) == 0o666 & ~mask  # was mkstemp's private 0600
    assert images.shape == (3, 16, 16, 3) and sorted({int(v) for v in images[:, 0, 0, 0]}) == [0, 40, 80]


def test_npz_files_never_hold_pickled_objects(tmp_path: Path) -> None:
    import numpy as np

    from sadh.sdk.atomic import atomic_save_npz

    atomic_save_npz(tmp_path / "ok.npz", a=np.arange(3), names=np.array(["x", "y"]))
    with np.load(tmp_path / "ok.npz", allow_pickle=False) as f:
        assert f["a"].tolist() == [0, 1, 2] and f["names"].tolist() == ["x", "y"]
    with pytest.raises(SadhError, match="bad.npz: objects would need pickling"):
        atomic_save_npz(tmp_path / "bad.npz", objects=np.array([{"a": 1}], dtype=object))
    assert not (tmp_path / "bad.npz").exists()

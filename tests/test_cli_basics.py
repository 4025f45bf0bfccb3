"""The CLI frame: help lists every command, --version, and one-line errors with exit code 2."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from sadh.cli.app import app

COMMANDS = ["pipeline", "data", "train", "export", "encode", "index", "search", "eval", "bench"]


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert f" {name} " in result.output, name


def test_version() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"sadh {version('sadh')}"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sadh.cli.app", *args], capture_output=True, text=True)


def test_bad_dataset_is_one_line_exit_2(tmp_path: Path) -> None:
    out = _cli("data", "info", "--data", str(tmp_path / "nope"))
    assert out.returncode == 2
    assert out.stderr.startswith("error: unknown dataset") and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_corrupt_list_file_exit_2(tmp_path: Path) -> None:
    (tmp_path / "list.txt").write_text("a.jpg 1 0\nb.jpg 1\n")
    out = _cli("data", "info", "--data", str(tmp_path / "list.txt"))
    assert out.returncode == 2 and "list.txt:1: image" in out.stderr and "Traceback" not in out.stderr


def test_data_info_and_preview(tmp_path: Path) -> None:
    out = _cli("data", "info", "--data", "fashion-mnist", "--out", str(tmp_path / "split.npz"))
    assert out.returncode == 0, out.stderr
    assert "64000" in out.stdout and (tmp_path / "split.npz").is_file()
    out = _cli("data", "preview", "--data", "fashion-mnist-mosaic", "--out", str(tmp_path / "p.png"), "--count", "4")
    assert out.returncode == 0, out.stderr
    import cv2

    assert cv2.imread(str(tmp_path / "p.png")).shape == (192, 192, 3)


def test_data_output_paths_are_checked_before_loading(tmp_path: Path) -> None:
    (tmp_path / "list.txt").write_text("a.jpg 1 0\n")
    for args, words in [
        (["data", "info", "--out", str(tmp_path)], "it is a folder, not a file"),
        (["data", "info", "--data", str(tmp_path / "list.txt"), "--out", str(tmp_path / "list.txt")], "is also --data"),
        (["data", "preview", "--out", str(tmp_path / "list.txt" / "p.png")], "list.txt is a file, not a folder"),
    ]:
        out = _cli(*args)
        assert out.returncode == 2 and words in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert (tmp_path / "list.txt").read_text() == "a.jpg 1 0\n"

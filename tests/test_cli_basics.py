"""The CLI frame: help lists every command, --version, and one-line errors with exit code 2."""
from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sadh.cli.app import app
from sadh.cli.options import DataOptions, model_split_path, next_hint

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


def test_train_help_shows_real_defaults() -> None:
    from sadh.train.config import TrainConfig

    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    assert f"(default: {TrainConfig.eval_every})" in result.output
    assert f"(default: {TrainConfig.eval_database})" in result.output and "TrainConfig" not in result.output


def test_ctrl_c_is_one_line_exit_130_and_usage_errors_stay_exit_2(monkeypatch) -> None:
    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("sadh.cli.options.load_dataset_split", interrupted)
    result = CliRunner().invoke(app, ["data", "info"])
    assert result.exit_code == 130
    assert result.output == "interrupted; files written so far are complete; re-run the command to finish\n"
    assert CliRunner().invoke(app, ["train", "--no-such-option"]).exit_code == 2


def test_ctrl_c_while_the_app_imports_is_one_line(monkeypatch, capsys: pytest.CaptureFixture[str]) -> None:
    import sadh.cli

    class InterruptedImport:  # a Ctrl-C that lands while `sadh-cli` imports OpenCV and the commands
        def find_spec(self, name: str, *args: object) -> None:
            if name == "sadh.cli.app":
                raise KeyboardInterrupt

    monkeypatch.delitem(sys.modules, "sadh.cli.app")
    monkeypatch.delattr(sadh.cli, "app", raising=False)
    monkeypatch.setattr(sys, "meta_path", [InterruptedImport(), *sys.meta_path])
    with pytest.raises(SystemExit) as exit_info:
        sadh.cli.main()
    assert exit_info.value.code == 130 and capsys.readouterr().err == "interrupted while starting; nothing was done\n"


def test_next_hint_is_one_pasteable_line(capsys: pytest.CaptureFixture[str]) -> None:
    words = ["python", "examples/camera_app.py", "0", "--model", Path("/runs/my run/best.int8-cpu.onnx"), "--index", "x" * 200]
    next_hint(*words)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("next: ")  # never wrapped, however long
    assert shlex.split(out[len("next: "):]) == [str(w) for w in words]


def test_data_options_give_back_their_command_line() -> None:
    assert DataOptions().args() == []
    opts = DataOptions(data="fashion-mnist-mosaic", data_dir=Path("/d d"), class_names=Path("n.txt"), seed=3, query_per_class=5)
    assert opts.args() == [
        "--data", "fashion-mnist-mosaic", "--data-dir", "/d d", "--class-names", "n.txt", "--seed", "3", "--query-per-class", "5",
    ]


def test_model_split_is_found_beside_every_precision(tmp_path: Path) -> None:
    for name in ("best.split.npz", "best.v2.split.npz"):
        (tmp_path / name).write_bytes(b"")
    for model, split in [("best.onnx", "best"), ("best.int8-cpu.onnx", "best"), ("best.fp16.H200.trt10.3.engine", "best"),
                         ("best.v2.int8-qdq.onnx", "best.v2")]:
        assert model_split_path(tmp_path / model) == tmp_path / f"{split}.split.npz", model
    assert model_split_path(tmp_path / "other.onnx") is None

"""The CLI frame: help lists every command, --version, and one-line errors with exit code 2."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from sadh.cli.app import app
from sadh.sdk.grid import LINE_HEIGHT, PREVIEW_TILE as TILE, text_width, wrap_caption
from sadh.cli.options import DataOptions, next_hint
from sadh.sdk.data import find_fashion_mnist
from sadh.export.settings import Calibration, QdqTool
from sadh.train.backbones import Backbone
from sadh.train.config import Amp, Method, Recipe
from sadh.train.progress import ProgressBar

from cli_run import assert_user_error, cli

COMMANDS = ["pipeline", "data", "train", "export", "encode", "index", "search", "eval", "bench"]


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(app, ["--help"])
    plain = re.sub(r"\x1b\[[0-9;]*m", "", result.output)  # rich styles help where FORCE_COLOR / GITHUB_ACTIONS is set
    assert result.exit_code == 0
    for name in COMMANDS:
        assert f" {name} " in plain, name


@pytest.mark.parametrize("command", [["train"], ["export"], ["index", "build"], ["eval"]])
def test_help_at_80_columns_names_every_option_in_full(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    cmd = typer.main.get_command(app)
    for name in command:
        cmd = cmd.commands[name]
    for param in cmd.params:
        for opt in param.opts if param.param_type_name == "option" else []:
            assert opt in result.output, opt  # rich's panels cut long names ("--backbone-weigh…") at 80 columns


@pytest.mark.parametrize("args, message", [(["train", "--bits", "12"], "error: bits must be"), (["train", "--bogus"], "--bogus")])
def test_under_torchrun_only_rank_0_reports_a_bad_command_line(args: list[str], message: str) -> None:
    for rank, shown in (("0", True), ("1", False)):  # every rank parses the same command line: one report, not one per rank
        env = {**os.environ, "WORLD_SIZE": "2", "RANK": rank, "LOCAL_RANK": rank}
        out = subprocess.run([sys.executable, "-m", "sadh.cli.app", *args], capture_output=True, text=True, env=env)
        assert out.returncode == 2 and (message in out.stderr) == shown and (out.stderr == "") != shown, out.stderr


def test_other_ranks_report_their_own_errors_once_they_joined_the_group(monkeypatch) -> None:
    from sadh.cli.app import reports_errors
    from sadh.train import distributed

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert not reports_errors()  # the command line and data are the same on every rank: rank 0 reports
    monkeypatch.setattr(distributed, "joined_group", lambda: True)
    assert reports_errors()  # e.g. its own GPU out of memory: only this rank knows
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(distributed, "joined_group", lambda: False)
    assert reports_errors()


def test_a_group_without_a_command_prints_its_help_on_stdout() -> None:
    out = cli("index")
    commands = typer.main.get_command(app).commands["index"].commands
    assert len(commands) > 1 and out.stderr == "", out.stderr
    for name in commands:
        assert re.search(rf"^\s+{name}\s", out.stdout, re.MULTILINE), (name, out.stdout)  # each listed, one a line


def test_the_resume_command_keeps_the_torchrun_launch(monkeypatch) -> None:
    from sadh.cli import launch_command

    for name in ("WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert launch_command() == ["sadh-cli"]
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert launch_command() == ["torchrun", "--standalone", "--nproc_per_node=4", "-m", "sadh.cli.app"]
    monkeypatch.setenv("WORLD_SIZE", "8")  # two nodes of 4: the rendezvous is the user's to repeat
    assert launch_command() == ["torchrun", "--nnodes=2", "<your rendezvous options>", "--nproc_per_node=4", "-m", "sadh.cli.app"]


def test_version() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"sadh {version('sadh')}"


def test_bad_dataset_is_one_line_exit_2(tmp_path: Path) -> None:
    out = cli("data", "info", "--data", str(tmp_path / "nope"))
    assert out.returncode == 2
    assert out.stderr.startswith("error: unknown dataset") and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_corrupt_list_file_exit_2(tmp_path: Path) -> None:
    (tmp_path / "list.txt").write_text("a.jpg 1 0\nb.jpg 1\n")
    out = cli("data", "info", "--data", str(tmp_path / "list.txt"))
    assert out.returncode == 2 and "list.txt:1: image" in out.stderr and "Traceback" not in out.stderr


def test_data_info_and_preview(tmp_path: Path) -> None:
    out = cli("data", "info", "--data", "fashion-mnist", "--out", str(tmp_path / "split.npz"))
    assert out.returncode == 0, out.stderr
    assert "64000" in out.stdout and (tmp_path / "split.npz").is_file()
    out = cli("data", "preview", "--data", "fashion-mnist-mosaic", "--out", str(tmp_path / "p.png"), "--count", "4")
    assert out.returncode == 0, out.stderr
    import cv2

    height, width, _ = cv2.imread(str(tmp_path / "p.png")).shape
    assert width == 2 * TILE and height > 2 * TILE  # 2 x 2 tiles, each above its caption


LONG_NAMES = ["an unusually long class name for the trousers", "sneakers_with_a_long_underscored_name_and_no_spaces_at_all"]


def test_long_class_names_are_shown_whole_in_a_pipe(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    for k in range(12):
        cv2.imwrite(str(tmp_path / f"{k}.png"), np.full((8, 8, 3), 20 * k, np.uint8))
    (tmp_path / "list.txt").write_text("".join(f"{k}.png {k % 2} {1 - k % 2}\n" for k in range(12)))
    (tmp_path / "names.txt").write_text("\n".join(LONG_NAMES))
    data = ["--data", str(tmp_path / "list.txt"), "--class-names", str(tmp_path / "names.txt"), "--query-per-class", "1",
            "--train-per-class", "2"]
    out = cli("data", "info", *data, columns=None)  # rich's width is its own choice, stdout being a pipe
    assert out.returncode == 0, out.stderr
    assert "classes: " + ", ".join(LONG_NAMES) in out.stdout.splitlines()  # one line, not wrapped at 80 columns
    out = cli("data", "preview", *data, "-o", str(tmp_path / "p.png"), "--count", "4")
    assert out.returncode == 0, out.stderr
    height, width, _ = cv2.imread(str(tmp_path / "p.png")).shape
    lines = max(len(wrap_caption(name, TILE - 4)) for name in LONG_NAMES)
    assert max(map(text_width, LONG_NAMES)) > 2 * (TILE - 4)  # in any font: three caption lines or more
    assert width == 2 * TILE and height == 2 * (TILE + lines * LINE_HEIGHT + 4)


def assert_wrapped(text: str, width: int) -> list[str]:
    """What the caption wrapper promises, whatever the font measures: every line fits, no character is lost, a
    word is broken only when it alone is wider than the tile, and a line ends only where the next word (or, inside
    a too-wide word, the next character) would not fit on it."""
    lines = wrap_caption(text, width)
    assert all(text_width(line) <= width for line in lines), lines
    assert "".join(lines).replace(" ", "") == text.replace(" ", ""), lines  # only the spaces at breaks are dropped
    tokens = [token for line in lines for token in line.split(" ")]
    for word in text.split(" "):
        if word and text_width(word) <= width:
            assert word in tokens, (word, lines)  # whole on one line
    for line, following in zip(lines, lines[1:]):
        head = following.split(" ")[0]
        joined = line + " " + head if text_width(head) <= width and " " + head in " " + text else line + following[0]
        assert text_width(joined) > width, (line, following)
    return lines


def test_preview_captions_wrap_and_keep_every_character() -> None:
    for text in [", ".join(LONG_NAMES), "Sneaker", "", "T-shirt/top, Ankle boot"]:
        assert_wrapped(text, TILE - 4)
    words = "T-shirt/top, Ankle boot".split(" ")
    for width in {text_width(words[0]), text_width(" ".join(words[:2])), text_width(words[1]) - 1}:
        assert_wrapped("T-shirt/top, Ankle boot", width)  # break points measured, not assumed from one font version
    assert len(assert_wrapped("T-shirt/top, Ankle boot", text_width("T-shirt/top, Ankle boot"))) == 1
    assert len(assert_wrapped("T-shirt/top, Ankle boot", text_width("T-shirt/top, Ankle boot") - 1)) == 2


def test_data_output_paths_are_checked_before_loading(tmp_path: Path) -> None:
    (tmp_path / "list.txt").write_text("a.jpg 1 0\n")
    for args, words in [
        (["data", "info", "--out", str(tmp_path)], "it is a folder, not a file"),
        (["data", "info", "--data", str(tmp_path / "list.txt"), "--out", str(tmp_path / "list.txt")], "is also --data"),
        (["data", "preview", "--out", str(tmp_path / "list.txt" / "p.png")], "list.txt is a file, not a folder"),
    ]:
        out = cli(*args)
        assert out.returncode == 2 and words in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert (tmp_path / "list.txt").read_text() == "a.jpg 1 0\n"
    (tmp_path / "lists").mkdir()
    for name in ("train.txt", "test.txt", "database.txt"):
        (tmp_path / "lists" / name).write_text("a.jpg 1 0\n")
    out = cli("data", "info", "--data", str(tmp_path / "lists"), "--out", str(tmp_path / "lists" / "test.txt"))
    assert_user_error(out, "is also --data's test.txt: writing it would replace that input")
    shutil.copytree(find_fashion_mnist()["test_labels"].parent, tmp_path / "fm")
    target = find_fashion_mnist(tmp_path / "fm")["test_labels"]
    before = target.read_bytes()
    assert_user_error(cli("data", "info", "--data-dir", str(tmp_path / "fm"), "--out", str(target)), "is also a Fashion-MNIST file")
    assert target.read_bytes() == before


def test_outputs_never_replace_a_dataset_image_and_a_split_for_other_data_is_named(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    (tmp_path / "img").mkdir()
    for k in range(12):
        cv2.imwrite(str(tmp_path / "img" / f"{k}.png"), np.full((8, 8, 3), 20 * k, np.uint8))
    (tmp_path / "list.txt").write_text("".join(f"img/{k}.png {k % 2} {1 - k % 2}\n" for k in range(12)))
    data = ["--data", str(tmp_path / "list.txt"), "--query-per-class", "1", "--train-per-class", "2"]
    before = (tmp_path / "img" / "3.png").read_bytes()
    for command in (["info", "--out"], ["preview", "-o"]):
        out = cli("data", *command, str(tmp_path / "img" / "3.png"), *data)
        assert_user_error(out, "img/3.png is an image of the dataset: writing it would replace that image")
    assert (tmp_path / "img" / "3.png").read_bytes() == before
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "img" / "4.png").rename(tmp_path / "elsewhere" / "report.png")
    (tmp_path / "img" / "4.png").symlink_to(tmp_path / "elsewhere" / "report.png")  # a dataset image that is a link
    out = cli("data", "preview", "-o", str(tmp_path / "elsewhere" / "report.png"), *data)
    assert_user_error(out, "report.png is an image of the dataset")
    assert cli("data", "info", *data, "--out", str(tmp_path / "split.npz")).returncode == 0
    assert "warning" not in cli("data", "info", *data, "--split", str(tmp_path / "split.npz")).stderr
    (tmp_path / "list.txt").write_text("".join(f"img/{k}.png {1 - k % 2} {k % 2}\n" for k in range(12)))  # relabelled
    out = cli("data", "info", *data, "--split", str(tmp_path / "split.npz"))
    assert out.returncode == 0 and f"warning: {tmp_path / 'split.npz'} was made for other data" in out.stderr, out.stderr



def test_a_library_warning_prints_once_where_the_host_configured_logging(tmp_path: Path, capsys, caplog) -> None:
    import logging

    import cv2
    import numpy as np

    from sadh.cli.options import library_warnings_shown
    from sadh.sdk.data import Split

    for k in range(4):
        cv2.imwrite(str(tmp_path / f"{k}.png"), np.full((8, 8, 3), 20 * k, np.uint8))
    (tmp_path / "list.txt").write_text("".join(f"{k}.png {k % 2} {1 - k % 2}\n" for k in range(4)))
    Split(np.arange(2), np.arange(2, 3), np.arange(3, 4)).made_for(np.eye(2, dtype=np.uint8)[[0, 1, 0, 1]]).save(tmp_path / "s.npz")
    host = "import logging, sys; logging.basicConfig(); from sadh.cli.app import main; main()"  # a root handler, as a host sets
    args = ["data", "info", "--data", tmp_path / "list.txt", "--split", tmp_path / "s.npz", "--query-per-class", "1"]
    out = subprocess.run([sys.executable, "-c", host, *map(str, args)], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    said = [line for line in out.stderr.splitlines() if "was made for other data" in line]
    assert len(said) == 1 and said[0].startswith(f"warning: {tmp_path / 's.npz'} was made for other data"), out.stderr

    log = logging.getLogger("sadh.sdk.model_split")
    with library_warnings_shown():
        log.warning("inside")
    log.warning("after")  # the host's handlers (here pytest's) get the library's warnings again
    assert capsys.readouterr().err == "warning: inside\n" and [r.getMessage() for r in caplog.records] == ["after"]

def test_train_help_shows_real_defaults() -> None:
    from sadh.train.config import TrainConfig

    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    assert f"default: {TrainConfig.eval_every};" in result.output
    assert f"default: {TrainConfig.eval_database};" in result.output and "TrainConfig" not in result.output


def _parse(command: list[str], args: list[str]) -> dict:
    """The parameters `sadh-cli COMMAND ARGS` would run with (parsed only, nothing runs)."""
    cmd = typer.main.get_command(app)
    for name in command:
        cmd = cmd.commands[name]
    with cmd.make_context(" ".join(command), args) as ctx:
        return ctx.params


@pytest.mark.parametrize("command, needed", [(["train"], []), (["eval"], ["-m", "m.onnx"]), (["pipeline"], []), (["export"], ["m.pt"])])
def test_the_eval_database_size_has_the_same_names_everywhere(command: list[str], needed: list[str]) -> None:
    for spelling in ("--eval-database", "--database"):
        params = _parse(command, [*needed, spelling, "7"])
        assert params.get("eval_database", params.get("database")) == 7, spelling


@pytest.mark.parametrize(
    "command, needed", [(["train"], []), (["data", "info"], []), (["data", "preview"], []), (["eval"], ["-m", "m.onnx"]), (["pipeline"], [])]
)
def test_out_is_also_dash_o_everywhere(command: list[str], needed: list[str]) -> None:
    assert _parse(command, [*needed, "-o", "x"])["out"] == Path("x")


def test_ctrl_c_is_one_line_exit_130_and_usage_errors_stay_exit_2(monkeypatch) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("sadh.sdk.data.sources.load_dataset_split", interrupted)
    result = CliRunner().invoke(app, ["data", "info"])
    assert result.exit_code == 130  # (on a line of its own: after an empty one once any progress bar was drawn in this process)
    assert result.stderr.lstrip("\n") == "interrupted; files written so far are complete; re-run the command to finish\n"
    assert CliRunner().invoke(app, ["train", "--no-such-option"]).exit_code == 2


@pytest.mark.parametrize("moment", ["before its with", "in its constructor", "in its close"])
def test_ctrl_c_while_a_bar_is_drawn_starts_the_interrupt_line_on_a_line_of_its_own(monkeypatch, moment: str) -> None:
    drawn = []  # the interrupted frame, kept alive by the traceback, holds the bar the same way

    def interrupted_while_drawing(*args: object, **kwargs: object) -> None:
        bar = ProgressBar(total=3, desc="epoch 2/100", leave=False, disable=False)  # drawn; Ctrl-C before a `with` closes it
        if moment == "in its close":  # close() takes the bar off the list of open bars first, then wipes it
            ProgressBar.live.discard(bar)
        if moment == "in its constructor":  # its close() fails, the bar's text stays on the line

            def close_fails() -> None:
                del bar.close  # at garbage collection tqdm's own close runs
                raise AttributeError("'tqdm' object has no attribute 'pos'")

            bar.close = close_fails
        drawn.append(bar)
        raise KeyboardInterrupt

    monkeypatch.setattr("sadh.sdk.data.sources.load_dataset_split", interrupted_while_drawing)
    result = CliRunner().invoke(app, ["data", "info"])
    lines = [line.strip() for line in result.stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert result.exit_code == 130 and "epoch 2/100" in lines[0], result.stderr
    assert lines[-1] == "interrupted; files written so far are complete; re-run the command to finish", result.stderr


@pytest.mark.parametrize("env, printed", [({"RANK": "0", "LOCAL_RANK": "0"}, True), ({"RANK": "3", "LOCAL_RANK": "1"}, False),
                                           ({"LOCAL_RANK": "1"}, False)])
def test_ctrl_c_under_torchrun_prints_from_rank_0_only(monkeypatch, env: dict[str, str], printed: bool) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("sadh.sdk.data.sources.load_dataset_split", interrupted)
    for name in ("RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(app, ["data", "info"], env=env)
    assert result.exit_code == 130 and result.stderr.lstrip("\n").startswith("interrupted; ") == printed and (printed or result.stderr == "")


@pytest.mark.parametrize("rank, printed", [("0", True), ("1", False)])  # under torchrun only rank 0 says it
def test_ctrl_c_while_the_app_imports_is_one_line(monkeypatch, capsys: pytest.CaptureFixture[str], rank: str, printed: bool) -> None:
    import sadh.cli

    monkeypatch.setenv("RANK", rank)

    class InterruptedImport:  # a Ctrl-C that lands while `sadh-cli` imports OpenCV and the commands
        def find_spec(self, name: str, *args: object) -> None:
            if name == "sadh.cli.app":
                raise KeyboardInterrupt

    monkeypatch.delitem(sys.modules, "sadh.cli.app")
    monkeypatch.delattr(sadh.cli, "app", raising=False)
    monkeypatch.setattr(sys, "meta_path", [InterruptedImport(), *sys.meta_path])
    with pytest.raises(SystemExit) as exit_info:
        sadh.cli.main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 130 and err == ("interrupted while starting; nothing was done\n" if printed else "")


def test_next_hint_is_one_pasteable_line(capsys: pytest.CaptureFixture[str]) -> None:
    words = ["python", "examples/camera_app.py", "0", "--model", Path("/runs/my run/best.int8-cpu.onnx"), "--index", "x" * 200]
    next_hint(*words)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("next: ")  # never wrapped, however long
    assert shlex.split(out[len("next: "):]) == [str(w) for w in words]


@pytest.mark.parametrize("command, option, choices", [
    (["train"], "--method", Method), (["train"], "--backbone", Backbone), (["train"], "--recipe", Recipe), (["train"], "--amp", Amp),
    (["pipeline"], "--backbone", Backbone), (["export", "m.pt"], "--calib-method", Calibration), (["export", "m.pt"], "--qdq-tool", QdqTool),
])
def test_an_unknown_choice_is_refused_in_one_line_and_help_lists_the_choices(command, option, choices) -> None:
    out = cli(*command, option, "bogus")
    assert_user_error(out, option)  # exit 2, one line, before any work
    assert "'bogus'" in out.stderr and all(f"'{c.value}'" in out.stderr for c in choices), out.stderr
    shown = CliRunner().invoke(app, [*command[:1], "--help"], env={"COLUMNS": "300"}).output
    line = next(line for line in shown.splitlines() if line.strip().startswith(option))
    assert all(c.value in line for c in choices), line


def test_the_options_take_their_defaults_from_the_config_classes() -> None:
    code = (
        "import dataclasses\n"
        "from sadh.export.settings import ExportSettings\n"
        "from sadh.sdk.data import DatasetSpec\n"
        "from sadh.train.config import TrainConfig\n"
        "def change(cls, name, value):\n"
        "    next(f for f in dataclasses.fields(cls) if f.name == name).default = value\n"
        "    setattr(cls, name, value)\n"
        "change(DatasetSpec, 'query_per_class', 7); change(TrainConfig, 'bits', 48); change(TrainConfig, 'method', 'csq')\n"
        "change(ExportSettings, 'calib_images', 123)\n"
        "import typer\n"
        "from sadh.cli.app import app\n"
        "cmd = typer.main.get_command(app)\n"
        "for command, name in (('train', 'query_per_class'), ('train', 'bits'), ('pipeline', 'bits'), ('train', 'method'), "
        "('pipeline', 'method'), ('export', 'calib_images')):\n"
        "    print(command, name, next(p.default for p in cmd.commands[command].params if p.name == name))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "train query_per_class 7", "train bits ['48']", "pipeline bits 48", "train method csq", "pipeline method csq",
        "export calib_images 123",
    ]


def test_an_index_sidecar_records_the_dataset_options_under_their_option_names() -> None:
    from sadh.sdk.indexing import dataset_record

    record = dataset_record(DataOptions(data_dir=Path("/d"), split_seed=3), "database")
    assert record == {"data": "fashion-mnist", "data_dir": "/d", "image_root": None, "class_names": None, "split": None, "seed": 3,
                      "query_per_class": 100, "train_per_class": 500, "role": "database"}  # the sidecar format: --seed is "seed"
    assert list(record) == ["data", "data_dir", "image_root", "class_names", "split", "seed", "query_per_class", "train_per_class", "role"]


def test_data_options_give_back_their_command_line() -> None:
    assert DataOptions().args() == []
    opts = DataOptions(data="fashion-mnist-mosaic", data_dir=Path("/d d"), class_names=Path("n.txt"), split_seed=3, query_per_class=5)
    assert opts.args() == [
        "--data", "fashion-mnist-mosaic", "--data-dir", "/d d", "--class-names", "n.txt", "--seed", "3", "--query-per-class", "5",
    ]


def test_model_split_is_found_beside_every_precision(tmp_path: Path) -> None:
    from sadh.sdk.model_split import model_split_path

    for name in ("best.split.npz", "best.v2.split.npz"):
        (tmp_path / name).write_bytes(b"")
    for model, split in [("best.onnx", "best"), ("best.int8-cpu.onnx", "best"), ("best.fp16.H200.trt10.3.engine", "best"),
                         ("best.v2.int8-qdq.onnx", "best.v2")]:
        assert model_split_path(tmp_path / model) == tmp_path / f"{split}.split.npz", model
    assert model_split_path(tmp_path / "other.onnx") is None

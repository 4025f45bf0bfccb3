"""`sadh-cli pipeline --quick`: the whole chain (train, export FP32 + INT8, index, evaluate) and its resume."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import cv2
import numpy as np
import pytest

from sadh.cli.options import library_warnings_shown, make_console
from sadh.cli.pipeline_cmd import step_printer, summary_table
from sadh.export.pipeline import QUICK_TRAIN, TRAIN_NAME, Step, export_log, finished_training
from sadh.sdk.data import LabeledImages, Split
from sadh.sdk.encoder import Encoder
from sadh.sdk.errors import SadhError
from sadh.sdk.index import HammingIndex
from sadh.sdk.indexing import finished_index, save_index
from sadh.sdk import Sidecar, sidecar_path
from sadh.train.checkpoint import load_checkpoint, save_checkpoint
from sadh.train.config import TrainConfig
from sadh.train.run_folder import RunFolder
from cli_run import assert_user_error, cli


@pytest.mark.slow
def test_pipeline_quick_end_to_end_and_resume(tmp_path, fashion_mnist):
    run = tmp_path / "a run"
    out = cli("pipeline", "--quick", "--out", run)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "report:" in out.stdout and "reusing" not in out.stdout
    (hint,) = [line for line in out.stdout.splitlines() if line.startswith("next: ")]  # one line, however long the paths
    assert shlex.split(hint)[-4:] == ["--model", str(run / "export" / "best.int8-cpu.onnx"), "--index", str(run / "index" / "int8-cpu.sidx")]
    assert shlex.split(hint)[1:3] == ["python", str(Path(__file__).resolve().parents[1] / "examples" / "camera_app.py")]  # from any folder
    assert (run / "export" / "best.split.npz").is_file()  # so eval / index build of these models use the training split
    summary = json.loads((run / "report" / "summary.json").read_text())
    rows = {r["name"]: r for r in summary["rows"]}
    assert list(rows) == ["torch (training)", "ONNX fp32", "ONNX int8-cpu", "ONNX int8-qdq"]
    torch_map = rows["torch (training)"]["map"]
    assert 0.1 < torch_map <= 1
    assert abs(rows["ONNX fp32"]["map"] - torch_map) < 0.02  # same network, same queries and database subset
    for name in ("ONNX int8-cpu", "ONNX int8-qdq"):
        assert abs(rows[name]["map"] - torch_map) < 0.1
        assert rows[name]["size_mb"] < rows["ONNX fp32"]["size_mb"]
    for precision in ("fp32", "int8-cpu", "int8-qdq"):
        for name in ("metrics.json", "pr_curve.png", "precision_at_n.png", "retrieval_grid.png"):
            assert (run / "report" / precision / name).is_file()
    assert (run / "report" / "pr_curve.png").is_file() and (run / "report" / "precision_at_n.png").is_file()

    index_path = run / "index" / "int8-cpu.sidx"
    index, side = HammingIndex.load(index_path), Sidecar.load(sidecar_path(index_path))
    assert len(index) == len(side.ids) == 400 and side.dataset["data"] == "fashion-mnist"
    encoder = Encoder(rows["ONNX int8-cpu"]["model"])
    some = np.array(side.ids[:16])
    np.testing.assert_array_equal(index.codes[:16], encoder.encode(fashion_mnist.images[some]))
    assert [fashion_mnist.class_names[c] for c in side.labels[0]] == side.label_names(side.ids[0])

    again = cli("pipeline", "--quick", "--out", run)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "reusing finished training" in again.stdout and "reusing the export" in again.stdout
    assert "reusing the index" in again.stdout and "3/4 indexing" not in again.stdout
    rerun = {r["name"]: r for r in json.loads((run / "report" / "summary.json").read_text())["rows"]}
    assert rerun["ONNX fp32"]["map"] == rows["ONNX fp32"]["map"]


def test_pipeline_quick_keeps_the_split_sizes_given(tmp_path):
    # 7,000 queries per class cannot be made from Fashion-MNIST: the error shows the size given was used, not --quick's 10
    out = cli("pipeline", "--quick", "--query-per-class", "7000", "--out", tmp_path / "r")
    assert_user_error(out, "need more than 7000 queries")


def test_pipeline_bad_bits(tmp_path):
    assert_user_error(cli("pipeline", "--quick", "--bits", "12", "--out", tmp_path / "r"), "bits")


def test_pipeline_names_a_split_made_for_other_data(tmp_path):
    other_labels = np.eye(10, dtype=np.uint8)[np.arange(70000) % 10]
    Split(np.arange(10), np.arange(10, 20), np.arange(20, 40)).made_for(other_labels).save(tmp_path / "other.npz")
    out = cli("pipeline", "--quick", "--split", tmp_path / "other.npz", "--bits", "12", "--out", tmp_path / "r")  # bits: stop there
    assert f"warning: {tmp_path / 'other.npz'} was made for other data" in out.stderr, out.stderr


def test_export_warnings_reach_a_library_user_as_warnings_and_the_cli_prints_them_once(capsys, caplog):
    steps: list[Step] = []
    log = export_log(steps.append)
    log("best.onnx: parity 100.00% bits")
    log("warning: the labels of photos changed since the run was trained")  # as export_model words it
    assert steps == [Step("best.onnx: parity 100.00% bits")]
    warned = [(r.levelname, r.name, r.getMessage()) for r in caplog.records]
    assert warned == [("WARNING", "sadh.export.pipeline", "the labels of photos changed since the run was trained")]
    with library_warnings_shown():  # as sadh-cli pipeline runs it
        export_log(step_printer(make_console()))("warning: the labels of photos changed since the run was trained")
    printed = capsys.readouterr()
    assert (printed.out, printed.err) == ("", "warning: the labels of photos changed since the run was trained\n")


def test_pipeline_refuses_a_dataset_option_its_data_does_not_read(tmp_path):
    (tmp_path / "names.txt").write_text("a\n")
    refused = cli("pipeline", "--quick", "--class-names", tmp_path / "names.txt", "--out", tmp_path / "r")
    assert_user_error(refused, "--class-names does not apply to fashion-mnist: its only dataset option is --data-dir")
    assert not (tmp_path / "r").exists()  # refused before any work


def _quick_config(out, **settings) -> TrainConfig:
    """The training config `pipeline --quick --out OUT` uses (plus `settings`)."""
    return TrainConfig(**{"bits": 32, "data": "fashion-mnist", **settings}, out=str(out), run_name=TRAIN_NAME, **QUICK_TRAIN)


def _finished_run(out, **settings) -> None:
    """A finished quick run's last.pt and best.pt in OUT/train (no weights: only what the reuse check reads)."""
    state = {"epoch": QUICK_TRAIN["epochs"], "config": _quick_config(out, **settings).to_dict(), "best_map": 0.5}
    for name in ("last.pt", "best.pt"):
        save_checkpoint(out / TRAIN_NAME / name, state)


def test_finished_run_is_reused_only_with_the_same_settings(tmp_path):
    _finished_run(tmp_path / "old")  # then the folder is moved: where it lives does not define the run
    (tmp_path / "old").rename(tmp_path / "run")
    run_dir = tmp_path / "run" / TRAIN_NAME
    assert finished_training(run_dir, _quick_config(tmp_path / "run")).best_map == 0.5
    differ = "data fashion-mnist there, fashion-mnist-mosaic now; bits 32 there, 16 now.*another --out"
    with pytest.raises(SadhError, match=differ):
        finished_training(run_dir, _quick_config(tmp_path / "run", bits=16, data="fashion-mnist-mosaic"))


def test_a_run_folder_is_finished_once_all_epochs_trained_and_best_pt_is_there(tmp_path):
    run = RunFolder(tmp_path / TRAIN_NAME)
    assert run.saved() is None and not run.finished()
    _finished_run(tmp_path)
    assert run.finished() and run.saved().best_map == 0.5
    save_checkpoint(run.last, {"epoch": QUICK_TRAIN["epochs"] - 1, "config": _quick_config(tmp_path).to_dict(), "best_map": 0.5})
    assert not run.finished()  # an epoch short
    _finished_run(tmp_path)
    run.best.unlink()
    assert not run.finished()


def test_a_run_saved_with_a_relative_data_path_is_reused_from_its_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _finished_run(tmp_path, data="lists/all.txt", class_names="lists/names.txt")  # as runs were saved before this change
    now = _quick_config(tmp_path, data=str(tmp_path / "lists" / "all.txt"), class_names=str(tmp_path / "lists" / "names.txt"))
    assert finished_training(tmp_path / TRAIN_NAME, now).best_map == 0.5
    with pytest.raises(SadhError, match="data .*lists/all.txt there, .*other.txt now"):
        finished_training(tmp_path / TRAIN_NAME, _quick_config(tmp_path, data=str(tmp_path / "other.txt"), class_names=now.class_names))


def test_a_finished_run_on_data_whose_labels_changed_is_not_reused(tmp_path, fashion_mnist):
    _finished_run(tmp_path)
    run_dir, cfg = tmp_path / TRAIN_NAME, _quick_config(tmp_path)
    split = Split(np.arange(2), np.arange(2, 4), np.arange(4, 6))
    split.made_for(fashion_mnist.labels).save(run_dir / "split.npz")  # as train() records it
    assert finished_training(run_dir, cfg).best_map == 0.5
    edited = fashion_mnist.labels.copy()
    edited[7] = np.roll(edited[7], 1)  # one item relabelled
    split.made_for(edited).save(run_dir / "split.npz")
    with pytest.raises(SadhError, match="was trained on fashion-mnist before its labels changed; start a new run in another folder"):
        finished_training(run_dir, cfg)


def test_a_finished_index_is_reused_only_for_the_same_labels(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"model")
    data = LabeledImages(labels=np.eye(3, dtype=np.uint8)[[0, 1, 2, 0]], class_names=["a", "b", "c"],
                         images=np.zeros((4, 8, 8), np.uint8))
    items, spec = np.array([1, 3]), {"data": "d", "role": "database"}
    index, path = HammingIndex(8), tmp_path / "db.sidx"
    index.add(np.array([[1], [2]], np.uint8), ids=items)
    save_index(index, Sidecar(items.tolist(), [[1], [0]], data.class_names, dataset=spec, model=str(model.resolve())), path)
    assert len(finished_index(path, model, spec, data, items)) == 2
    data.labels[3] = [0, 0, 1]  # relabelled since the index was built
    assert finished_index(path, model, spec, data, items) is None


def test_a_finished_index_that_skipped_unreadable_files_is_reused_while_they_stay_unreadable(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"model")
    for k in range(3):
        cv2.imwrite(str(tmp_path / f"{k}.png"), np.full((8, 8), k, np.uint8))
    (tmp_path / "1.png").write_bytes(b"not a png")
    data = LabeledImages(labels=np.eye(2, dtype=np.uint8)[[0, 1, 0]], class_names=["a", "b"],
                         paths=[str(tmp_path / f"{k}.png") for k in range(3)])
    spec, path, index = {"data": "d", "role": "database"}, tmp_path / "db.sidx", HammingIndex(8)
    index.add(np.array([[1], [2]], np.uint8), ids=np.array([0, 2]))  # item 1 was skipped
    save_index(index, Sidecar([0, 2], [[0], [0]], data.class_names, dataset=spec, model=str(model.resolve())), path)
    assert len(finished_index(path, model, spec, data, np.arange(3))) == 2
    cv2.imwrite(str(tmp_path / "1.png"), np.zeros((8, 8), np.uint8))  # repaired: it must be encoded now
    assert finished_index(path, model, spec, data, np.arange(3)) is None


def test_pipeline_out_must_be_a_folder(tmp_path):
    (tmp_path / "list.txt").write_text("a.jpg 1 0\n")
    assert_user_error(cli("pipeline", "--quick", "--out", tmp_path / "list.txt"), "it is a file, not a folder")


@pytest.mark.slow
def test_pipeline_takes_the_training_and_dataset_options(tmp_path, fashion_mnist):
    """A list-file dataset with its image root and class names, another method, input size and seed reach every stage."""
    images, cls = tmp_path / "images", fashion_mnist.labels.argmax(1)
    images.mkdir()
    lines = []
    for c in range(fashion_mnist.num_classes):
        for j, i in enumerate(np.flatnonzero(cls == c)[:60]):
            cv2.imwrite(str(images / f"{c}_{j}.png"), fashion_mnist.image(i))
            lines.append(" ".join([f"{c}_{j}.png", *(str(int(c == d)) for d in range(fashion_mnist.num_classes))]))
    (tmp_path / "all.txt").write_text("\n".join(lines) + "\n")
    names = [f"kind {c}" for c in range(fashion_mnist.num_classes)]
    (tmp_path / "names.txt").write_text("\n".join(names) + "\n")
    run = tmp_path / "run"
    out = cli(
        "pipeline", "--quick", "--data", tmp_path / "all.txt", "--image-root", images, "--class-names", tmp_path / "names.txt",
        "--method", "csq", "--input-size", "32", "--seed", "3", "--query-per-class", "7", "--out", run,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    cfg = TrainConfig.from_dict(load_checkpoint(run / "train" / "best.pt", ("config",))["config"])
    assert (cfg.method, cfg.input_size, cfg.split_seed, cfg.image_root) == ("csq", 32, 3, str(images))
    assert (cfg.query_per_class, cfg.train_per_class) == (7, QUICK_TRAIN["train_per_class"])  # the size given, --quick's other
    encoder = Encoder(run / "export" / "best.int8-cpu.onnx")
    assert encoder.class_names == names and encoder.preprocess.input_size == 32
    side = Sidecar.load(sidecar_path(run / "index" / "int8-cpu.sidx"))
    assert side.dataset["data"] == str(tmp_path / "all.txt") and side.dataset["class_names"] == str(tmp_path / "names.txt")
    assert "all.txt, csq, small_cnn, 32 bits, mAP@all" in json.loads((run / "report" / "summary.json").read_text())["title"]


def test_summary_table_gains_ndcg_for_multi_label_data():
    from rich.console import Console

    def render(rows):
        console = Console(width=200, record=True)
        console.print(summary_table(rows, "t"))
        return console.export_text()

    single = [{"name": "torch (training)", "map": 0.5}, {"name": "ONNX fp32", "map": 0.51, "map_tie_aware": 0.5}]
    assert "NDCG@100" not in render(single)
    multi = render([single[0], {**single[1], "ndcg@100": 0.6789}])
    assert "NDCG@100" in multi and "0.6789" in multi

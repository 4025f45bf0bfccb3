"""`sadh-cli eval`: metrics.json with sane values that match an independent computation, and the three PNGs."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import cv2
import numpy as np
import pytest

from sadh.cli.eval_cmd import warn_tie_order
from sadh.cli.options import DataOptions, data_for_model, library_warnings_shown
from sadh.sdk.data import Split, SplitSizes, database_subset, load_dataset
from sadh.sdk.encoder import Encoder
from sadh.sdk.evaluation import grid_queries, map_name
from sadh.sdk.model_split import ModelData
from sadh.sdk.metrics import graded_metrics, mean_average_precision, ndcg_at_k, precision_at_n, precision_recall_by_radius
from cli_run import assert_user_error, cli
from tiny_model import export_tiny

QUERY_PER_CLASS = 5
DATABASE = 800


def hint(stdout: str) -> list[str]:
    """The `next:` line of a command's output, split as a shell would."""
    (line,) = [line for line in stdout.splitlines() if line.startswith("next: ")]
    return shlex.split(line[len("next: "):])


def test_eval_report(tmp_path):
    model = tmp_path / "a model.onnx"
    export_tiny(model, bits=32)
    data_dir = "/usr/share/datasets/fashion-mnist"
    out = cli("eval", "-m", model, "--data-dir", data_dir, "--query-per-class", QUERY_PER_CLASS, "--database", DATABASE, "--out", tmp_path / "rep")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("mAP@all ") and "" not in lines  # the default split: no split line, no empty one
    assert "metrics.json" in out.stdout
    assert "cut-off mAP@all: single-label data: the whole database" in out.stdout and "NDCG" not in out.stdout
    assert "warning: no training split beside" in out.stderr and "may include the model's training images" in out.stderr
    assert hint(out.stdout) == [
        "sadh-cli", "index", "build", "--model", str(model), "--data-dir", data_dir, "--query-per-class", str(QUERY_PER_CLASS),
        "--out", "index.sidx",
    ]
    for name in ("pr_curve.png", "precision_at_n.png", "retrieval_grid.png"):
        image = cv2.imread(str(tmp_path / "rep" / name))
        assert image is not None and min(image.shape[:2]) > 200, name
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert m["queries"] == 10 * QUERY_PER_CLASS and m["database"] == DATABASE and m["bits"] == 32
    assert "graded" not in m and not (tmp_path / "rep" / "ndcg_at_k.png").exists()  # single-label data: mAP says it all
    assert 0.1 < m["map"] <= 1 and abs(m["map"] - m["map_tie_aware"]) < 0.1
    p = np.array(m["precision_at_n"]["precision"])
    assert m["precision_at_n"]["n"][0] == 1 and np.all((p >= 0) & (p <= 1))
    recall = np.array(m["pr_by_radius"]["recall"], dtype=float)
    assert len(recall) == 33 and np.all(np.diff(recall) >= -1e-12) and recall[-1] == 1.0
    assert m["encode_ms_per_image"] > 0 and m["search_us_per_query"] > 0

    data, split = load_dataset("fashion-mnist", sizes=SplitSizes(query_per_class=QUERY_PER_CLASS, query_total=10 * QUERY_PER_CLASS))
    db = database_subset(split.database, DATABASE, 0)
    enc = Encoder(model)
    args = (enc.encode(data.images[split.query]), enc.encode(data.images[db]), data.labels[split.query], data.labels[db])
    expected = mean_average_precision(*args)
    assert m["map"] == pytest.approx(expected.map, abs=1e-9) and m["map_tie_aware"] == pytest.approx(expected.tie_aware_map, abs=1e-9)
    ns = np.array(m["precision_at_n"]["n"])
    np.testing.assert_allclose(p, precision_at_n(*args, ns))
    precision, recall_expected = precision_recall_by_radius(*args)
    np.testing.assert_allclose(recall, recall_expected)
    np.testing.assert_allclose(np.array(m["pr_by_radius"]["precision"], dtype=float), precision)  # null (no item within) = NaN


def test_eval_reports_graded_metrics_for_multi_label_data(tmp_path):
    model = tmp_path / "m.onnx"
    export_tiny(model, bits=16)
    args = ("--data", "fashion-mnist-mosaic", "--query-per-class", 4, "--train-per-class", 5, "--database", 1200)
    out = cli("eval", "-m", model, *args, "--out", tmp_path / "rep")
    assert out.returncode == 0, out.stderr
    assert "mAP@1000" in out.stdout and "cut-off mAP@1000: the fashion-mnist-mosaic protocol" in out.stdout
    assert "graded (relevance = labels shared): NDCG@100 0." in out.stdout and "WAP@1000" in out.stdout
    assert "ndcg_at_k.png" in out.stdout
    image = cv2.imread(str(tmp_path / "rep" / "ndcg_at_k.png"))
    assert image is not None and min(image.shape[:2]) > 200
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert (m["topk"], m["topk_source"]) == (1000, "the fashion-mnist-mosaic protocol")

    data, split = load_dataset("fashion-mnist-mosaic", sizes=SplitSizes(query_total=40, train_total=50))
    db = database_subset(split.database, 1200, 0)
    enc = Encoder(model)
    codes = (enc.encode(data.images[split.query]), enc.encode(data.images[db]), data.labels[split.query], data.labels[db])
    g = m["graded"]
    for k in (100, 1000):
        expected = graded_metrics(*codes, topk=k)
        assert g[f"ndcg@{k}"] == pytest.approx(expected.ndcg, abs=1e-9) and g[f"wap@{k}"] == pytest.approx(expected.wap, abs=1e-9)
        assert g[f"acg@{k}"] == pytest.approx(expected.acg, abs=1e-9)
        assert g[f"ndcg@{k}_tie_aware"] == pytest.approx(expected.tie_aware_ndcg, abs=1e-9)
        assert g[f"acg@{k}_tie_aware"] == pytest.approx(expected.tie_aware_acg, abs=1e-9)
    assert g["ndcg_at_k"]["k"][-1] == 1000 and 0 < g["ndcg@100"] < 1
    np.testing.assert_allclose(g["ndcg_at_k"]["ndcg"], ndcg_at_k(*codes, np.array(g["ndcg_at_k"]["k"])))


def test_grid_queries_cover_classes():
    labels = np.eye(4, dtype=np.uint8)[[2, 2, 0, 1, 1, 3, 0]]
    rows = grid_queries(labels, count=5)
    assert sorted(rows.tolist()[:4]) == [0, 2, 3, 5] and len(rows) == 5 and len(set(rows.tolist())) == 5


def test_grid_queries_are_distinct_on_multi_label_data():
    labels = np.zeros((12, 10), np.uint8)
    for row, classes in enumerate([[0, 1, 2], [0, 3], [1, 4], [5, 9], [6], [0], [7, 8], [2], [1], [3], [4], [5]]):
        labels[row, classes] = 1
    rows = grid_queries(labels, count=8).tolist()
    assert len(rows) == 8 and len(set(rows)) == 8
    assert rows[:5] == [0, 1, 2, 3, 4] and labels[rows].any(0).all()  # one query per class first: all 10 shown
    assert grid_queries(labels[:2], count=8).tolist() == [0, 1]


def test_eval_warns_when_the_database_order_decides_the_map(capsys):
    warn_tie_order(0.1942, 0.1943)  # measured on a shuffled list file: no warning
    assert capsys.readouterr().err == ""
    warn_tie_order(0.3203, 0.2507)  # measured on a class-ordered folder tree
    assert "ties decide much of this mAP (0.3203; 0.2507 over random orders" in capsys.readouterr().err


def test_map_is_named_by_what_was_computed():
    assert map_name(5000, 60) == map_name(None, 60) == map_name(60, 60) == "mAP@all"
    assert map_name(100, 800) == "mAP@100"


def tiny_model_of(path: Path, dataset: str, split: Split | None) -> Path:
    """A tiny model that records `dataset` as its training set, with `split` beside it as export writes it."""
    export_tiny(path, bits=32, dataset=dataset)
    if split is not None:
        split.save(path.with_name(path.name.split(".")[0] + ".split.npz"))
    return path


def small_split() -> Split:
    """Fashion-MNIST items 0-29 query, 30-59 train, 60-119 database."""
    return Split(np.arange(30), np.arange(30, 60), np.arange(60, 120))


def test_eval_uses_the_model_training_split(tmp_path):
    model = tiny_model_of(tmp_path / "best.int8-cpu.onnx", "fashion-mnist", small_split())
    out = cli("eval", "-m", model, "--out", tmp_path / "rep")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == f"split: the model's training split {tmp_path / 'best.split.npz'} (--split FILE to use another)"
    assert "split" not in out.stderr and "has classes T-shirt/top" in out.stderr  # the tiny model's classes are class0..9
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert (m["queries"], m["database"]) == (30, 60)



def printed(opts: DataOptions, model: Encoder, capsys) -> tuple[ModelData, str, str]:
    """What `data_for_model` chose, and what it printed as `sadh-cli eval` runs it: (chosen, stdout, stderr)."""
    with library_warnings_shown():
        chosen = data_for_model(opts, model)
    out = capsys.readouterr()
    return chosen, out.out, out.err


def test_a_given_split_wins_and_other_data_gets_a_warning(tmp_path, capsys):
    model = Encoder(tiny_model_of(tmp_path / "m.onnx", "my-photos", small_split()))
    classes = "warning: fashion-mnist has classes T-shirt/top, Trouser, Pullover, Dress, ... (10 in all) but the model was trained on class0"
    chosen, out, err = printed(DataOptions(split=tmp_path / "m.split.npz"), model, capsys)
    assert len(chosen.split.query) == 30 and chosen.spec.split == tmp_path / "m.split.npz"
    assert out == f"split: {tmp_path / 'm.split.npz'} (--split)\n"
    assert len(err.splitlines()) == 1 and err.startswith(classes)

    chosen, out, err = printed(DataOptions(query_per_class=2), model, capsys)
    assert len(chosen.split.query) == 20 and chosen.spec.split is None
    assert out == ""  # the default split: no line (not an empty one)
    first, second = err.splitlines()
    assert first.startswith("warning: the model was trained on my-photos, not fashion-mnist: using the default split")
    assert second.startswith(classes)


def photo_lists(tmp_path: Path) -> tuple[Path, Path]:
    """Two list files both named photos.txt (so both datasets are called photos), 12 items each, with other labels."""
    paths = []
    for folder, shift in (("a", 0), ("b", 1)):
        (tmp_path / folder).mkdir()
        for k in range(12):
            cv2.imwrite(str(tmp_path / folder / f"{k}.png"), np.full((4, 4, 3), k, np.uint8))
        paths.append(tmp_path / folder / "photos.txt")
        paths[-1].write_text("".join(f"{k}.png {(k + shift) % 3 // 2} {1 - (k + shift) % 3 // 2}\n" for k in range(12)))
    return paths[0], paths[1]


def test_the_model_split_is_used_only_for_the_data_it_was_made_for(tmp_path, capsys):
    trained_on, same_name = photo_lists(tmp_path)
    labels = load_dataset(str(trained_on), sizes=SplitSizes(1, 1))[0].labels
    made = Split(np.arange(2), np.arange(2, 4), np.arange(4, 12))
    model = Encoder(tiny_model_of(tmp_path / "m.onnx", "photos", made.made_for(labels)))
    sizes = dict(query_per_class=1, train_per_class=1)
    chosen, out, err = printed(DataOptions(data=str(trained_on), **sizes), model, capsys)
    assert len(chosen.split.query) == 2 and chosen.spec.split == tmp_path / "m.split.npz"
    assert out == f"split: the model's training split {tmp_path / 'm.split.npz'} (--split FILE to use another)\n"
    assert err.startswith("warning: photos has classes") and len(err.splitlines()) == 1  # the tiny model's are class0..9

    chosen, out, err = printed(DataOptions(data=str(same_name), **sizes), model, capsys)  # same name, other labels
    assert chosen.spec.split is None and out == ""
    assert np.array_equal(chosen.split.query, load_dataset(str(same_name), sizes=SplitSizes(1, 1))[1].query)
    assert sum("split" in line for line in err.splitlines()) == 1
    assert f"warning: the model's training split {tmp_path / 'm.split.npz'} was made for another photos (other items" in err

    made.save(tmp_path / "m.split.npz")  # as written before split files recorded their data
    chosen, out, err = printed(DataOptions(data=str(same_name), **sizes), model, capsys)
    assert np.array_equal(chosen.split.train, made.train) and chosen.spec.split == tmp_path / "m.split.npz"
    assert out.startswith("split: the model's training split") and "split" not in err  # matched by name only


def test_eval_bad_input(tmp_path):
    assert_user_error(cli("eval", "-m", tmp_path / "none.onnx"), "model file not found")
    (tmp_path / "list.txt").write_text("a.jpg 1 0\n")
    assert_user_error(cli("eval", "-m", tmp_path / "none.onnx", "--out", tmp_path / "list.txt"), "it is a file, not a folder")
    assert_user_error(cli("eval", "-m", tmp_path / "none.onnx", "--out", tmp_path / "list.txt" / "rep"), "is a file, not a folder")

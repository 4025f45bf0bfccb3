"""Top-1 accuracy of trained runs' classifier head on Fashion-MNIST queries, training and database items.

Why: on the single-label protocol, mAP@all tracks the product of the query and database accuracies, so
this says how far a recipe is from a mAP target. Reads RUN/best.pt and RUN/split.npz of `sadh-cli train`
or `bench/train_bench.py` runs (SADH: the classifier is trained by the BCE term; DPSH / CSQ leave it
untrained). Usage: python bench/classifier_accuracy.py RUN [RUN ...] --results FILE.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from sadh.sdk.atomic import atomic_write_text
from sadh.sdk.data import Split, load_fashion_mnist
from sadh.train.augment import center_crop, normalize
from sadh.train.cache import cache_images
from sadh.train.checkpoint import load_model
from sadh.train.run_folder import RunFolder

SAMPLES = {"query": None, "train": 1000, "database": 2000}  # None: every item of the role; else a seeded sample
BATCH = 200


def accuracy(model, data, index: np.ndarray, pre) -> float:
    """Fraction of items whose top classifier logit is their (single) label, at the run's eval preprocessing."""
    images = cache_images(data, index, pre.resize_size)
    preds = []
    with torch.no_grad():
        for s in range(0, len(index), BATCH):
            x = torch.from_numpy(np.ascontiguousarray(images[s : s + BATCH]))
            preds.append(model(normalize(center_crop(x, pre.input_size), pre.mean, pre.std)).logits.argmax(1).numpy())
    return float((np.concatenate(preds) == data.labels[index].argmax(1)).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--results", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = load_fashion_mnist()
    results = json.loads(args.results.read_text()) if args.results.is_file() else {}
    for run in args.runs:
        model, info = load_model(RunFolder(run).best)
        split = Split.load(RunFolder(run).split_file)
        rng = np.random.default_rng(0)
        row = {"best_map": info.best_map, "method": info.method, "backbone": info.backbone, "input_size": info.preprocess.input_size}
        for role, size in SAMPLES.items():
            index = getattr(split, role)
            index = index if size is None else rng.choice(index, min(size, len(index)), replace=False)
            row[f"{role}_accuracy"] = accuracy(model, data, index, info.preprocess)
            row[f"{role}_items"] = int(len(index))
        row["query_x_database"] = row["query_accuracy"] * row["database_accuracy"]
        results[run.name] = row
        atomic_write_text(args.results, json.dumps(results, indent=1))
        print(run.name, {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)


if __name__ == "__main__":
    main()

"""Stage-1 benchmark: how well the label network's target codes rank label rows, per stage-1 margin θ0.

Stage 2 can at best reproduce the code dictionary, so retrieval with the targets themselves bounds it: every
query label row is coded by the trained label network, ranked against the database rows' codes by Hamming
distance, relevant = shares a label; mAP@all and mAP@1000, tie-aware (rows with the same labels share a code,
so plain mAP would depend on database order); NDCG@100 and NDCG@1000 with relevance = labels shared, tie-aware
(whether the codes order rows by overlap at all); and the closest pair of distinct training label rows that share
no label (the pairs the stage-1 hinge pushes apart): their minimum and mean Hamming distance. No images:
about 30 s per run on two cores.

Label sets: Fashion-MNIST's one-hot labels (10 classes), the two mosaic benchmarks' multi-hot labels, and two
synthetic sets shaped like NUS-WIDE (21 classes) and MS-COCO (80 classes): Zipf class popularity, items drawn
from co-occurrence groups, 1 + Poisson labels per item (1.7 and 2.9 on average; no real label files install
offline here), 5,000 training rows (the database) and 1,000 query rows each, as Fashion-MNIST and the mosaics
have in the training benchmark (whose label rows they use).

    nice python bench/label_space_bench.py --results bench/results/label_space_bench.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from sadh.sdk.atomic import atomic_write_text
from sadh.sdk.data import load_dataset, load_fashion_mnist, split_per_class
from sadh.sdk.data.sources import MOSAICS
from sadh.sdk.metrics import graded_metrics, mean_average_precision
from sadh.train.config import TrainConfig
from sadh.train.label_stage import train_label_net
from sadh.train.losses import label_margin

HERE = Path(__file__).resolve().parent
N_TRAIN, N_QUERY = 5_000, 1_000
SYNTHETIC = {"nuswide-like": (21, 0.9, 4), "coco-like": (80, 1.9, 8)}  # classes, mean extra labels, groups
IN_GROUP = 0.8  # chance that a label comes from the item's co-occurrence group


def synthetic_labels(classes: int, extra: float, groups: int, n: int, seed: int) -> np.ndarray:
    """Multi-hot rows: Zipf(0.8) class popularity, 1 + Poisson(extra) draws, mostly from one group."""
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, classes + 1) ** 0.8
    group_of = rng.permutation(classes) % groups
    labels = np.zeros((n, classes), np.uint8)
    for i in range(n):
        members = np.flatnonzero(group_of == rng.integers(groups))
        for _ in range(1 + min(int(rng.poisson(extra)), 7)):
            pool = members if rng.random() < IN_GROUP else np.arange(classes)
            labels[i, rng.choice(pool, p=pop[pool] / pop[pool].sum())] = 1
    return labels


def label_sets() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(train/database rows, query rows) of every label set."""
    fashion = load_fashion_mnist()
    single = split_per_class(fashion.labels)  # the training benchmark's split
    sets = {"fashion-mnist": (fashion.labels[single.train], fashion.labels[single.query])}
    for name in MOSAICS:  # the training benchmark's mosaics ("mosaic" is the 2x2 set, as in earlier results)
        mosaic, multi = load_dataset(name)
        sets[name.replace("fashion-mnist-", "")] = (mosaic.labels[multi.train], mosaic.labels[multi.query])
    for name, (classes, extra, groups) in SYNTHETIC.items():
        rows = synthetic_labels(classes, extra, groups, N_TRAIN + N_QUERY, seed=0)
        sets[name] = (rows[:N_TRAIN], rows[N_TRAIN:])
    return sets


def target_codes(train: np.ndarray, rows: list[np.ndarray], bits: int, margin: float | str, seed: int) -> list[np.ndarray]:
    """±1 codes the label network trained on `train` gives each array of label rows."""
    net, _ = train_label_net(train, TrainConfig(bits=bits, label_margin=margin, seed=seed), torch.device("cpu"))
    with torch.no_grad():
        return [np.sign(net(torch.from_numpy(r).float()).u.numpy()) for r in rows]


def negative_distances(rows: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Hamming distances between the codes of every pair of label rows that share no label."""
    disjoint = np.triu((rows @ rows.T) == 0, k=1)
    return ((codes.shape[1] - codes @ codes.T) / 2)[disjoint]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bits", default="16,64")
    p.add_argument("--margins", default="0.2,auto")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results", type=Path, default=HERE / "results" / "label_space_bench.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    runs = []
    for name, (train, query) in label_sets().items():
        classes, unique = train.shape[1], np.unique(train, axis=0)
        print(f"{name}: {classes} classes, {len(unique)} distinct training rows, "
              f"{train.sum(1).mean():.2f} labels per item", flush=True)
        for bits in map(int, args.bits.split(",")):
            for margin in (m if m == "auto" else float(m) for m in args.margins.split(",")):
                for seed in range(args.seeds):
                    q, db, targets = target_codes(train, [query, train, unique], bits, margin, seed)
                    apart = negative_distances(unique.astype(np.int64), targets)
                    run = dict(labels=name, classes=classes, bits=bits, margin=margin, theta=label_margin(margin, classes),
                               seed=seed, map_all=mean_average_precision(q, db, query, train).tie_aware_map,
                               map_1000=mean_average_precision(q, db, query, train, topk=1000).tie_aware_map,
                               ndcg_100=graded_metrics(q, db, query, train, topk=100).tie_aware_ndcg,
                               ndcg_1000=graded_metrics(q, db, query, train, topk=1000).tie_aware_ndcg,
                               min_negative_distance=int(apart.min()), mean_negative_distance=float(apart.mean()))
                    print(json.dumps(run), flush=True)
                    runs.append(run)
    atomic_write_text(args.results, json.dumps({"protocol": __doc__.split("\n\n")[1], "runs": runs}, indent=1) + "\n")


if __name__ == "__main__":
    main()

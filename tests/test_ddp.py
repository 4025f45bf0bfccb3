"""DDP: two gloo CPU processes (as torchrun would start them) train one model and end with identical weights."""
from __future__ import annotations

import os
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sadh.sdk.data import load_fashion_mnist
from sadh.train import distributed
from sadh.train.checkpoint import load_checkpoint
from sadh.train.trainer import train

from train_helpers import tiny_config, tiny_split

WORLD = 2
DEADLINE_S = 300


def _worker(rank: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD))
    # a file rendezvous, as torchrun's store would be: a port chosen ahead of time can be taken by then
    dist.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=WORLD)
    data, split = tiny_split(load_fashion_mnist(), query=5, train=16, database=20)
    result = train(tiny_config(out, epochs=2, batch_size=16), data, split)
    torch.save(result.model.state_dict(), os.path.join(out, f"rank{rank}.pt"))
    distributed.teardown()


def test_two_gloo_ranks_agree(tmp_path) -> None:
    ctx = mp.spawn(_worker, args=(str(tmp_path),), nprocs=WORLD, join=False)
    deadline = time.monotonic() + DEADLINE_S
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("the DDP run did not finish in time")
    weights = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert all(torch.equal(state["model"][k], weights[0][k]) for k in weights[0])
    assert state["epoch"] == 2 and [e["epoch"] for e in state["history"]] == [1, 2]
    assert state["history"][-1]["map"] is not None and 0 < state["history"][-1]["map"] <= 1

"""`sadh-cli train`: train SADH (or the DPSH / CSQ baselines) on a dataset; run under `torchrun` for multi-GPU."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from ..sdk.errors import SadhError
from ..train.backbones import Backbone
from ..train.config import Amp, Method, Recipe, TrainConfig
from . import is_main_process, launch_command
from .options import (
    BACKBONE_OPTION, EVAL_DATABASE_NAMES, INPUT_SIZE_OPTION, METHOD_OPTION, DataOptions, check_outputs, data_options, next_hint,
    typed,
)

GIVEN_BY = {"seed": "split_seed"}  # TrainConfig settings given by a parameter of another name (--seed seeds both)


def parse_bits(values: list[str]) -> list[int]:
    """`--bits 16,32 --bits 64` -> [16, 32, 64] (validation happens in the training config)."""
    out = []
    for value in values:
        for part in value.split(","):
            try:
                out.append(int(part))
            except ValueError:
                raise SadhError(f"--bits takes integers like 32 or 16,32,48,64, got {part!r}") from None
    twice = sorted({b for b in out if out.count(b) > 1})
    if twice:
        raise SadhError(f"--bits names {', '.join(map(str, twice))} more than once; each bit length is one run")
    return out


def parse_margin(value: Optional[str]) -> float | str | None:
    """`--label-margin 0.1` -> 0.1, `auto` -> "auto", not given -> None (the recipe's)."""
    if value is None or value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise SadhError(f"--label-margin takes a number or auto, got {value!r}") from None


def register(app: typer.Typer) -> None:
    """Add the `train` command to the app."""

    @app.command("train")
    @data_options
    def train_command(
        ctx: typer.Context,
        opts: DataOptions,
        method: Method = METHOD_OPTION,
        backbone: Backbone = BACKBONE_OPTION,
        pretrained: Optional[bool] = typer.Option(
            TrainConfig.pretrained, "--pretrained/--no-pretrained",
            help="Start from shipped ImageNet weights (default: if the backbone has some).",
        ),
        backbone_weights: Optional[Path] = typer.Option(
            TrainConfig.backbone_weights, help="Backbone weights (.pt / .safetensors) to start from."
        ),
        bits: list[str] = typer.Option(
            [str(TrainConfig.bits)], help="Code length(s): repeat or comma-separate (16,32,48,64); one run each."
        ),
        recipe: Recipe = typer.Option(
            TrainConfig.recipe, help="fast: tuned for CPU; reference: the SADH paper's optimiser settings."
        ),
        epochs: Optional[int] = typer.Option(TrainConfig.epochs, min=1, help="Stage-2 epochs (default: from the recipe)."),
        batch_size: Optional[int] = typer.Option(
            TrainConfig.batch_size, min=1, help="Batch size per process (default: from the recipe)."
        ),
        lr: Optional[float] = typer.Option(TrainConfig.lr, help="Stage-2 learning rate (default: from the recipe)."),
        label_margin: Optional[str] = typer.Option(
            TrainConfig.label_margin,
            help="Stage-1 margin: a number, or auto = 0.2 capped at 0.9/(classes-1) (default: from the recipe).",
        ),
        input_size: Optional[int] = INPUT_SIZE_OPTION,
        amp: Amp = typer.Option(TrainConfig.amp, help="Mixed precision (auto: bf16/fp16 on CUDA, off on CPU)."),
        compile: bool = typer.Option(TrainConfig.compile, "--compile", help="torch.compile the network."),
        device: str = typer.Option(TrainConfig.device, help="auto | cpu | cuda | cuda:N."),
        threads: Optional[int] = typer.Option(TrainConfig.threads, min=1, help="CPU threads for torch (default: torch's choice)."),
        eval_every: int = typer.Option(TrainConfig.eval_every, min=1, help="Evaluate mAP every N epochs and after the last."),
        eval_database: int = typer.Option(
            TrainConfig.eval_database, *EVAL_DATABASE_NAMES, min=0,
            help="mAP against a seeded subset of this many database items, 0 = all.",
        ),
        resume: bool = typer.Option(
            TrainConfig.resume, "--resume",
            help="Continue the run in OUT/NAME from its last.pt with its saved settings (a constant schedule may take more --epochs).",
        ),
        out: Path = typer.Option(TrainConfig.out, "--out", "-o", help="Folder that holds the run folders."),
        run_name: Optional[str] = typer.Option(TrainConfig.run_name, help="Run folder name (default: DATA-METHOD-BACKBONE-BITSb)."),
    ) -> None:
        """Train a hashing network; writes OUT/NAME/best.pt, last.pt, log.jsonl and split.npz (decoded images: OUT/cache)."""
        from ..train import distributed
        from ..train.trainer import train

        settings: dict[str, Any] = dict(
            method=method, backbone=backbone, pretrained=pretrained,
            backbone_weights=str(backbone_weights) if backbone_weights else None,
            recipe=recipe, epochs=epochs, batch_size=batch_size, lr=lr, label_margin=parse_margin(label_margin),
            input_size=input_size, amp=amp,
            compile=compile, device=device, threads=threads, eval_every=eval_every, eval_database=eval_database,
            resume=resume, out=str(out), run_name=run_name,
        )
        given = {k: v for k, v in settings.items() if v is not None}
        # the settings typed on the command line: with --resume, those the saved run overrides are named
        on_command_line = {p for p in ctx.params if typed(ctx, p)}
        names = [*settings, *opts.dataset_settings(), "seed", "bits"]
        asked = {k for k in names if GIVEN_BY.get(k, k) in on_command_line}
        configs = [TrainConfig.from_spec(opts, bits=b, **given) for b in parse_bits(bits)]
        if run_name and len(configs) > 1:
            raise SadhError("--run-name names one run; drop it to train several bit lengths")
        check_outputs({}, folders={"--out": out})
        opts.check()
        data, split = (None, None) if resume else opts.load()  # a resumed run loads the data it saved
        main = is_main_process()
        try:
            for cfg in configs:
                result = train(cfg, data, split, asked)
                if main:
                    shown = "n/a" if result.best_map is None else f"{result.best_map:.4f}"
                    typer.echo(f"{result.bits} bits: best mAP {shown}; checkpoint {result.best} (last: {result.last})")
                    next_hint("sadh-cli", "export", result.best, "--int8")
        except KeyboardInterrupt:
            again = sys.argv[1:] + ([] if resume else ["--resume"])
            raise KeyboardInterrupt(f"continue with: {shlex.join([*launch_command(), *again])}") from None
        finally:
            distributed.teardown()

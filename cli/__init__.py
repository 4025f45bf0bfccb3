"""`sadh-cli`: the Typer app lives in `app`; `main` here is the console-script entry point."""
from __future__ import annotations

import os
import sys


def is_main_process() -> bool:
    """False in the ranks other than 0 of a `torchrun` job (its RANK, else LOCAL_RANK), which print nothing; else True."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0


def launch_command() -> list[str]:
    """How to start sadh-cli again as this process was started: `sadh-cli`, or under torchrun the same number of
    processes (on several nodes the rendezvous options are left for the user to repeat)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return ["sadh-cli"]
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    nodes = ["--standalone"] if local == world else [f"--nnodes={world // local}", "<your rendezvous options>"]
    return ["torchrun", *nodes, f"--nproc_per_node={local}", "-m", "sadh.cli.app"]


def main() -> None:
    """Console-script entry: import the app (OpenCV, rich: about a second) and run it; Ctrl-C even then is one line."""
    try:
        from .app import main as run_app
    except KeyboardInterrupt:
        if is_main_process():
            sys.stderr.write("interrupted while starting; nothing was done\n")
        raise SystemExit(130) from None
    except ModuleNotFoundError as e:  # a runtime-only install (`sadh`, `sadh[cpu]`, ...) has no CLI dependencies
        sys.stderr.write(f"error: sadh-cli needs {e.name}, which this install lacks: pip install 'sadh[export]'\n")
        raise SystemExit(2) from None
    run_app()

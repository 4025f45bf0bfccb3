"""`sadh-cli`: the Typer app lives in `app`; `main` here is the console-script entry point."""
from __future__ import annotations

import sys


def main() -> None:
    """Console-script entry: import the app (OpenCV, rich: about a second) and run it; Ctrl-C even then is one line."""
    try:
        from .app import main as run_app
    except KeyboardInterrupt:
        sys.stderr.write("interrupted while starting; nothing was done\n")
        raise SystemExit(130) from None
    run_app()

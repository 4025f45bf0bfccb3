"""`sadh-cli train` (being built; see its issue)."""
from __future__ import annotations

import typer

from ..sdk.errors import SadhError


def register(app: typer.Typer) -> None:
    """Add the command to the app."""

    @app.command("train", help="(not available yet: its issue is open)")
    def _cmd() -> None:
        raise SadhError("`sadh-cli train` is not available yet")

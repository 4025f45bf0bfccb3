"""`sadh-cli encode` (being built; see its issue)."""
from __future__ import annotations

import typer

from ..sdk.errors import SadhError


def register(app: typer.Typer) -> None:
    """Add the command to the app."""

    @app.command("encode", help="(not available yet: its issue is open)")
    def _cmd() -> None:
        raise SadhError("`sadh-cli encode` is not available yet")

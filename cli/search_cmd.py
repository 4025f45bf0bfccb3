"""`sadh-cli search` (being built; see its issue)."""
from __future__ import annotations

import typer

from ..sdk.errors import SadhError


def register(app: typer.Typer) -> None:
    """Add the command to the app."""

    @app.command("search", help="(not available yet: its issue is open)")
    def _cmd() -> None:
        raise SadhError("`sadh-cli search` is not available yet")

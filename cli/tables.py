"""The look of sadh-cli's tables: one box style of sadh's choosing, so what scripts parse does not change with rich's default."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.box import Box
    from rich.table import Table


def table_box() -> Box:
    """The box every table is drawn with: heavy header rule, light body lines (`│` between cells)."""
    from rich import box

    return box.HEAVY_HEAD


def new_table(**kwargs: Any) -> Table:
    """A rich Table (title, show_header, ... as `rich.table.Table` takes them) drawn with `table_box()`."""
    from rich.table import Table

    return Table(box=table_box(), **kwargs)

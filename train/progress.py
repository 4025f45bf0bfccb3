"""Training's progress bars: tqdm bars that keep a public registry, so the CLI can close those a Ctrl-C left open."""
from __future__ import annotations

from typing import Any, ClassVar
from weakref import WeakSet

from tqdm import tqdm


class ProgressBar(tqdm):
    """A tqdm bar listed in `ProgressBar.live` from its first moment (before its constructor runs) until it closes."""

    live: ClassVar[WeakSet[ProgressBar]] = WeakSet()
    made: ClassVar[bool] = False  # whether this process made any bar (one may be mid-close, off the list but on screen)

    def __new__(cls, *args: Any, **kwargs: Any) -> ProgressBar:
        bar = super().__new__(cls, *args, **kwargs)
        ProgressBar.live.add(bar)
        ProgressBar.made = True
        return bar

    def close(self) -> None:
        """Take the bar off the list, then close it as tqdm does."""
        ProgressBar.live.discard(self)
        super().close()


def close_open_bars() -> bool:
    """Close every bar still open (a Ctrl-C can strike before a bar's `with` closes it, or inside its constructor, where
    closing it may fail); whether any bar was ever made in this process, so its text may still be on the line."""
    for bar in list(ProgressBar.live):
        try:
            bar.close()
        except Exception:  # noqa: BLE001 - interrupted inside tqdm's constructor: nothing more to close
            ProgressBar.live.discard(bar)
    return ProgressBar.made

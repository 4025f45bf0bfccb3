"""Test helper: run `sadh-cli` in a subprocess and check its output (exit codes, one-line errors, rich tables)."""
from __future__ import annotations

import os
import subprocess
import sys

from sadh.cli.tables import table_box


def cli(*args: object, columns: int | None = 300, cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """Run `sadh-cli ARGS` in a subprocess (so exit codes and stderr are the real ones) with no terminal, as in CI.

    COLUMNS is `columns`, or unset with None (rich then picks its width for a pipe itself); `cwd` the working folder.
    """
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return subprocess.run(
        [sys.executable, "-m", "sadh.cli.app", *map(str, args)], capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env, cwd=cwd
    )


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the tables in `text`, as lists of stripped cells (wide rows, no wrapping), read with the box
    sadh-cli draws them with."""
    box = table_box()
    rows = [
        [c.strip() for c in line[len(box.mid_left) : len(line) - len(box.mid_right)].split(box.mid_vertical)]
        for line in text.splitlines()
        if line.startswith(box.mid_left) and line.endswith(box.mid_right)
    ]
    return [r for r in rows if r and r[0].isdigit()]


def assert_user_error(out: subprocess.CompletedProcess, words: str) -> None:
    """Exit code 2, one line `error: ...` naming the problem, no traceback."""
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("error: ") and words in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1

"""Text from data (file names, labels, class names, sidecar contents) made safe to show on a terminal."""
from __future__ import annotations

import re
from typing import Any

# C0/C1 controls and DEL, lone surrogates (undecodable bytes of a file name), and the invisible formatting characters
# that reorder or hide text (bidi overrides and isolates, zero-width characters, line/paragraph separators, BOM)
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def printable(value: object) -> str:
    """`str(value)` with every control or invisible formatting character written as a Python escape (`\\x1b`,
    `\\n`, `\\u202e`), so a name can neither drive the terminal (retitle, clear, move the cursor) nor break a line."""
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape", "backslashreplace").decode("ascii"), str(value))


def value_text(value: Any) -> str:
    """`value` for an error message: its repr, cut to 80 characters (its type when it has none to show)."""
    try:
        return f"{value!r:.80}"
    except Exception:  # e.g. an int past Python's int-to-str limit
        return f"a value too long to show ({type(value).__name__})"

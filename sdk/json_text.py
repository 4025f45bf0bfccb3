"""Parsing JSON that comes from files and model metadata: every malformed text is a ValueError."""
from __future__ import annotations

import json
from typing import Any


def parse_json(text: str | bytes) -> Any:
    """`json.loads`, with a text nested too deeply for Python's parser (RecursionError) a ValueError like any bad JSON."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply to read") from None

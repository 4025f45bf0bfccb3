"""The machine's physical memory: what a search result or an opened index file may use at most."""
from __future__ import annotations

import os

FALLBACK_MEMORY = 16 << 30  # assumed physical memory where os.sysconf cannot tell


def physical_memory() -> int:
    """Bytes of physical memory (os.sysconf), or FALLBACK_MEMORY where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return FALLBACK_MEMORY

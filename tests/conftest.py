"""Shared fixtures: real Fashion-MNIST (from the Debian package) and small subsets of it.

Where torch is not installed (the runtime-only environments of scripts/test-lowest.sh and scripts/test-aarch64.sh),
the test modules that import the full install at their top (NEEDS_FULL_INSTALL) are not collected and the tests
marked `torch` are deselected; both are counted in the summary. Every other test runs there too.
"""
from __future__ import annotations

import ast
import importlib.util
import signal
from pathlib import Path

import numpy as np
import pytest

from sadh.sdk.data import LabeledImages, load_fashion_mnist

HAS_TORCH = importlib.util.find_spec("torch") is not None
# Imports that only the full (dev) install has: torch, the CLI's packages, matplotlib (the plots), sadh's torch layers,
# and the test helpers that run sadh-cli or train.
NEEDS_FULL_INSTALL = {"torch", "typer", "tqdm", "matplotlib", "sadh.train", "sadh.export", "sadh.cli", "cli_run", "train_helpers"}
_NOT_COLLECTED: set[str] = set()


def top_level_imports(path: Path) -> set[str]:
    """Modules a file imports at its top level, with each of their parent packages (`a.b.c` -> a, a.b, a.b.c)."""
    names = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
        for module in modules:
            parts = module.split(".")
            names |= {".".join(parts[: i + 1]) for i in range(len(parts))}
    return names


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Without torch: skip collecting a test module that imports the full install at its top (listed in the summary)."""
    if HAS_TORCH or collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    if top_level_imports(collection_path) & NEEDS_FULL_INSTALL:
        _NOT_COLLECTED.add(collection_path.name)
        return True
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without torch: deselect the tests marked `torch` (pytest counts them as deselected)."""
    if HAS_TORCH:
        return
    deselected = [item for item in items if item.get_closest_marker("torch")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("torch")]


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Name the modules left out for want of torch (before pytest's own summary line, which stays last)."""
    if _NOT_COLLECTED:
        terminalreporter.write_line(
            f"torch is not installed: {len(_NOT_COLLECTED)} test modules that need the full install were not collected: "
            + ", ".join(sorted(_NOT_COLLECTED))
        )


@pytest.fixture(autouse=True)
def _restore_torch_settings():
    """Undo what `train()` sets process-wide (threads, deterministic algorithms, cuDNN flags): no test sees another's."""
    if not HAS_TORCH:
        yield
        return
    import torch

    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.benchmark,
             torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    yield
    torch.set_num_threads(saved[0])
    torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])
    torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved[3:]


@pytest.fixture
def python_sigint():
    """SIGINT (and SIGTERM, as `sadh-cli` sets it) raising KeyboardInterrupt, as in a terminal (a background job
    starts with SIGINT ignored)."""
    previous = {s: signal.signal(s, signal.default_int_handler) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in previous.items():
        signal.signal(s, handler)


@pytest.fixture(scope="session")
def fashion_mnist() -> LabeledImages:
    """All 70,000 Fashion-MNIST images (loaded once per test session)."""
    return load_fashion_mnist()


@pytest.fixture(scope="session")
def fashion_small(fashion_mnist: LabeledImages) -> LabeledImages:
    """20 images per class (200 in all), a fixed selection."""
    cls = fashion_mnist.labels.argmax(1)
    idx = np.concatenate([np.flatnonzero(cls == c)[:20] for c in range(fashion_mnist.num_classes)])
    return fashion_mnist.subset(idx)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Make a run that collected nothing fail loudly (pytest's exit code 5 is kept, with a message)."""
    if session.testscollected == 0:
        print("\nERROR: no tests were collected - this is a failure, not a pass")

"""Shared fixtures: real Fashion-MNIST (from the Debian package) and small subsets of it."""
from __future__ import annotations

import signal

import numpy as np
import pytest
import torch  # (the torch-free runtime is checked in subprocesses)

from sadh.sdk.data import LabeledImages, load_fashion_mnist


@pytest.fixture(autouse=True)
def _restore_torch_settings():
    """Undo what `train()` sets process-wide (threads, deterministic algorithms, cuDNN flags): no test sees another's."""
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

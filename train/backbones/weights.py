"""Load a backbone state dict from a file (torch.load(weights_only=True) or .safetensors), strictly."""

import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sadh.sdk.errors import SadhError

SHOWN_KEYS = 4


def torch_file_problem(path: Path, exc: Exception) -> str:
    """What a `torch.load(weights_only=True)` failure of `path` means, in words that never advise unpickling it."""
    if not zipfile.is_zipfile(path):  # torch files are zip archives
        return "truncated, damaged or not a torch file"
    if "Weights only load failed" in str(exc):
        return "it holds pickled Python objects, which sadh never loads (only tensors and plain data)"
    return "a damaged torch file"


def load_torch_file(path: str | Path) -> Any:
    """`torch.load` of plain data and tensors only (weights_only, on the CPU), with torch's warnings about the file
    silenced: a file it cannot read gets our one-line error, not torch's advice first."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=True)


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a flat tensor dict from a .safetensors file or a torch file (no pickle of arbitrary objects)."""
    path = Path(path)
    if not path.is_file():
        raise SadhError(f"backbone weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = load_torch_file(path)
    except Exception as exc:  # any unreadable file is a user error
        problem = "damaged or not a safetensors file" if path.suffix == ".safetensors" else torch_file_problem(path, exc)
        raise SadhError(f"cannot read backbone weights {path}: {problem}") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise SadhError(f"{path} is not a plain state dict of tensors")
    return state


def _shown(keys: set[str]) -> str:
    """A few sorted keys for an error message."""
    listed = sorted(keys)
    return ", ".join(listed[:SHOWN_KEYS]) + (f" (+{len(listed) - SHOWN_KEYS} more)" if len(listed) > SHOWN_KEYS else "")


def load_weights(model: nn.Module, path: str | Path, ignore_prefixes: tuple[str, ...] = ()) -> nn.Module:
    """Load a state dict file into model; keys under ignore_prefixes (e.g. a classifier) are skipped."""
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith(ignore_prefixes)}
    expected = model.state_dict()
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    if missing or unexpected:
        raise SadhError(
            f"{path} does not match {type(model).__name__}: "
            f"missing {len(missing)} keys [{_shown(missing)}], unexpected {len(unexpected)} keys [{_shown(unexpected)}]"
        )
    wrong = {k for k, v in state.items() if v.shape != expected[k].shape}
    if wrong:
        raise SadhError(f"{path} does not match {type(model).__name__}: wrong shapes for [{_shown(wrong)}]")
    model.load_state_dict(state)
    return model

"""Stage-1 → stage-2 hand-over: the semantic feature and code dictionaries of the unique training labels."""

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from sadh.sdk.errors import SadhError
from sadh.train.model import LabelNet


class Dictionaries(NamedTuple):
    """Unique label rows Ŷ (M, c), feature dictionary F = f_t(Ŷ) (M, feat), code dictionary U = u_t(Ŷ) (M, bits)."""

    labels: Tensor
    F: Tensor
    U: Tensor

    def to(self, device: torch.device | str) -> "Dictionaries":
        """Return the dictionaries on another device."""
        return Dictionaries(*(t.to(device) for t in self))


def unique_label_rows(labels: Tensor | np.ndarray) -> Tensor:
    """The distinct rows of a label matrix (n, c), sorted, as float32."""
    labels = torch.as_tensor(np.asarray(labels) if not isinstance(labels, Tensor) else labels)
    if labels.ndim != 2 or labels.shape[0] == 0 or labels.shape[1] == 0:
        raise SadhError(f"labels must be a non-empty 2-D (items, classes) matrix, got shape {tuple(labels.shape)}")
    return torch.unique(labels.detach().float().cpu(), dim=0)


def build_dictionaries(label_net: LabelNet, labels: Tensor | np.ndarray) -> Dictionaries:
    """Run the frozen label network (eval mode, no gradients) once on the unique training label rows."""
    unique = unique_label_rows(labels)
    if unique.shape[1] != label_net.num_classes:
        raise SadhError(f"labels have {unique.shape[1]} classes but the label network was built for {label_net.num_classes}")
    unique = unique.to(label_net.code.weight.device)
    label_net.eval()
    with torch.no_grad():
        out = label_net(unique)
    return Dictionaries(unique, out.f.float(), out.u.float())

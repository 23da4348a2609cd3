"""Reading the tensors of a user's weights file without executing anything in it.

Torch checkpoints (``.pt``/``.pth``) load with ``torch.load(weights_only=True)``; pickles of numpy arrays (``.pkl``,
how VGGFace2-pytorch distributes its SENet/ResNet weights) load through an unpickler that builds numpy arrays and
plain containers only and refuses anything else. Both give a flat ``{parameter name: tensor}`` state dict.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from extract.weights import WeightsError

_NUMPY_PICKLE_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
})


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Builds numpy arrays, dicts and lists; any other global in the file is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a weights pickle (numpy arrays only)")


def _numpy_pickle(path: Path) -> Any:
    with path.open("rb") as handle:
        return _NumpyOnlyUnpickler(handle, encoding="latin1").load()  # latin1: pickles written by Python 2


def load_state_dict(path: Path) -> dict[str, Any]:
    """``{name: torch.Tensor}`` from a torch checkpoint or a numpy pickle; a checkpoint that wraps its tensors
    (``{"state_dict": ...}``) or was saved from DataParallel (``module.`` prefixes) is unwrapped. Anything unreadable
    raises :class:`~extract.weights.WeightsError` naming the file."""
    import torch

    path = Path(path)
    try:
        if path.suffix == ".pkl":
            checkpoint = _numpy_pickle(path)
        else:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (whatever is wrong with it, the user's file is the thing to fix)
        raise WeightsError(f"{path}: not a weights file affectsync can read safely ({type(exc).__name__}: {exc})") \
            from exc
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
    if not isinstance(checkpoint, Mapping) or not checkpoint:
        raise WeightsError(f"{path}: holds no state dict of tensors")
    return {str(key).removeprefix("module."): torch.as_tensor(np.asarray(value)) if isinstance(value, np.ndarray)
            else value for key, value in checkpoint.items()}

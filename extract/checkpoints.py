"""Reading the tensors of a user's weights file without executing anything in it.

Torch checkpoints (``.pt``/``.pth``) load with ``torch.load(weights_only=True)``, numpy arrays inside them allowed
(torchvggish saves its PCA parameters that way); pickles of numpy arrays (``.pkl``, how VGGFace2-pytorch distributes
its SENet/ResNet weights) load through an unpickler that builds numpy arrays and plain containers only and refuses
anything else; ``.npz`` archives load without pickles. All give a flat ``{parameter name: tensor}`` state dict.
ONNX files open as onnxruntime sessions (:func:`onnx_session`), on CUDA when the installed onnxruntime offers it.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from extract.weights import WeightsError
from features_store.common import pick_device

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


def _numpy_safe_globals() -> list:
    """What torch's weights-only unpickler needs to rebuild numpy arrays (and nothing else)."""
    import numpy.dtypes

    return [np._core.multiarray._reconstruct, np._core.multiarray.scalar, np.ndarray, np.dtype,
            *(getattr(numpy.dtypes, name) for name in numpy.dtypes.__all__)]


def load_state_dict(path: Path) -> dict[str, Any]:
    """``{name: torch.Tensor}`` from a torch checkpoint or a numpy pickle; a checkpoint that wraps its tensors
    (``{"state_dict": ...}``) or was saved from DataParallel (``module.`` prefixes) is unwrapped. Anything unreadable
    raises :class:`~extract.weights.WeightsError` naming the file."""
    import torch

    path = Path(path)
    try:
        if path.suffix == ".pkl":
            checkpoint = _numpy_pickle(path)
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as arrays:
                checkpoint = dict(arrays)
        else:
            with torch.serialization.safe_globals(_numpy_safe_globals()):
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


def load_network(path: Path, build: Callable[[dict[str, Any]], Any], feature: str):
    """(network in eval mode on the device :func:`~features_store.common.pick_device` picks, device): ``build`` makes
    the ``torch.nn.Module`` for the state dict in ``path`` and loads it strictly; a state dict that does not fit is a
    :class:`~extract.weights.WeightsError` naming the file."""
    try:
        network = build(load_state_dict(path))
    except (RuntimeError, KeyError, ValueError) as exc:  # missing/unexpected keys, shape mismatches
        raise WeightsError(f"{path}: does not fit the {feature} network: {str(exc).splitlines()[0]}") from exc
    device = pick_device()
    return network.eval().to(device), device


ONNX_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
"""onnxruntime's providers in order of preference (those the installed build offers are used)."""


def onnx_session(path: Path, providers: Sequence[str] | None = None, threads: int | None = None):
    """An onnxruntime session of the ONNX file ``path``: on ``providers`` (None: CUDA when offered, else the CPU),
    with ``threads`` intra-op threads (None: onnxruntime's default); a file it cannot load is a
    :class:`~extract.weights.WeightsError` naming it."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=list(
            providers or [p for p in ONNX_PROVIDERS if p in available]))
    except Exception as exc:  # noqa: BLE001  (onnxruntime raises its own untyped errors)
        raise WeightsError(f"{path}: onnxruntime cannot load it ({exc})") from exc

"""Small helpers every layer shares (the store is the bottom layer): UTC time stamps, the compute device, and
out-of-memory errors that name the setting to lower."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from features_store.errors import OutOfMemory, UsageError

_OUT_OF_MEMORY_SIGNS = ("out of memory", "can't allocate memory", "cannot allocate memory", "failed to allocate")


def now_utc() -> str:
    """The current time as an ISO 8601 UTC stamp to the second (``2026-12-01T23:08:13+00:00``)."""
    return utc_stamp()


def utc_stamp(epoch_s: float | None = None) -> str:
    """``epoch_s`` (seconds since 1970; None: now) as an ISO 8601 UTC stamp to the second."""
    utc = dt.timezone.utc
    moment = dt.datetime.now(utc) if epoch_s is None else dt.datetime.fromtimestamp(epoch_s, utc)
    return moment.isoformat(timespec="seconds")


def pick_device(name: str = "auto"):
    """The torch device to compute on: ``auto`` is CUDA when torch sees a GPU, else the CPU; any other name
    (``cpu``, ``cuda``, ``cuda:1``) is taken as given, and refused when CUDA is named but absent."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UsageError(f"device {name!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {name!r}: CUDA is not available here (use --device cpu or auto)")
    return device


def is_out_of_memory(error: BaseException) -> bool:
    """True for a device or host allocation failure: ``MemoryError``, torch's ``OutOfMemoryError`` and the
    ``RuntimeError``s torch, CTranslate2 and onnxruntime raise when an allocation fails."""
    return isinstance(error, MemoryError) or (isinstance(error, RuntimeError) and any(
        sign in str(error).lower() for sign in _OUT_OF_MEMORY_SIGNS))


@contextmanager
def out_of_memory_names(setting: str, value: Any) -> Iterator[None]:
    """Around a batched model call: an allocation failure becomes :class:`~features_store.errors.OutOfMemory`
    naming ``setting`` (as the user sets it, e.g. ``--set bert.batch_segments=N``) and its current ``value``."""
    try:
        yield
    except Exception as error:
        if isinstance(error, OutOfMemory) or not is_out_of_memory(error):
            raise
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise OutOfMemory(f"out of memory with {setting} at {value}: lower it ({first_line})") from error

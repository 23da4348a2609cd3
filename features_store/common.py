"""Small helpers every layer shares (the store is the bottom layer): UTC time stamps and the compute device."""

from __future__ import annotations

import datetime as dt

from features_store.errors import UsageError


def now_utc() -> str:
    """The current time as an ISO 8601 UTC stamp to the second (``2026-12-01T23:08:13+00:00``)."""
    return utc_stamp()


def utc_stamp(epoch_s: float | None = None) -> str:
    """``epoch_s`` (seconds since 1970; None: now) as an ISO 8601 UTC stamp to the second."""
    moment = dt.datetime.now(dt.timezone.utc) if epoch_s is None else dt.datetime.fromtimestamp(epoch_s, dt.timezone.utc)
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

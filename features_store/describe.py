"""A JSON-ready description of a store: videos, T, duration, arrays and features with shape, dtype, provenance."""

from __future__ import annotations

from typing import Any

import numpy as np

from features_store.store import FeatureStore, refusal

_VIDEO_ATTRS = ("width", "height", "fps", "fps_nominal", "fps_average", "duration_s", "audio_offset_s",
                "audio_reason", "created_utc")


def describe_video(video_id: str, attrs: dict[str, Any], stored: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One video: completeness, T, stream facts, source identity, every array, and features grouped by extractor.

    ``features[name]`` describes the array ``name`` (or the feature's first array, e.g. ``word_index`` for ``words``)
    and lists the other arrays its extractor wrote (e.g. ``mel64`` with ``mel64_time`` and ``mel64_row``);
    ``n_words`` counts the ``words`` attribute (None without one). ``attrs``: the group's attributes; ``stored``: each
    array's zarr.json (:meth:`FeatureStore.videos_metadata`).
    """
    arrays: dict[str, Any] = {}
    features: dict[str, Any] = {}
    for name, metadata in stored.items():
        codecs = {codec.get("name") if isinstance(codec, dict) else str(codec) for codec in metadata.get("codecs", [])}
        refused = refusal(f"{video_id}/{name}", codecs, str(metadata.get("data_type")))
        if refused:  # a refused array is described, not fatal (verify reports it)
            arrays[name] = {"error": refused}
            continue
        provenance = (metadata.get("attributes") or {}).get("provenance") or {}
        arrays[name] = {"shape": list(metadata.get("shape", [])), "dtype": str(np.dtype(metadata["data_type"])),
                        "extractor": provenance.get("extractor")}
        feature = provenance.get("feature")
        if feature is not None:
            features.setdefault(feature, {"arrays": []})["arrays"].append(name)
    for feature, entry in features.items():  # a feature's own array, else its first (``words``: word_index)
        name = feature if feature in arrays else entry["arrays"][0]
        entry.update(shape=arrays[name]["shape"], dtype=arrays[name]["dtype"],
                     provenance=(stored[name].get("attributes") or {}).get("provenance"))
    return {
        "video_id": video_id,
        "complete": attrs.get("complete") is True,
        "T": attrs.get("n_frames"),
        **{key: attrs.get(key) for key in _VIDEO_ATTRS},
        "source": {"name": attrs.get("source_name"), "size_bytes": attrs.get("source_size_bytes"),
                   "sha256": attrs.get("source_sha256")},
        "arrays": arrays,
        "features": features,
        "n_words": len(attrs["words"]) if isinstance(attrs.get("words"), list) else None,
    }


def describe_store(store: FeatureStore) -> dict[str, Any]:
    """The whole store: ``videos`` maps video id to :func:`describe_video`; ``claims`` lists the writers' claims
    present (live ones: extraction in progress; ``stale`` ones: left by a run that died)."""
    videos = {video_id: describe_video(video_id, metadata["attributes"], metadata["arrays"])
              for video_id, metadata in store.videos_metadata().items()}
    return {
        "store": store.location,
        "format": store.root.attrs.get("format"),
        "n_videos": len(videos),
        "n_complete": sum(v["complete"] for v in videos.values()),
        "failures": store.failures(),
        "claims": store.claims.listed(),
        "videos": videos,
    }

"""A JSON-ready description of a store: videos, T, duration, arrays and features with shape, dtype, provenance."""

from __future__ import annotations

from typing import Any

from features_store.store import FeatureStore, StoreError, VideoGroup

_VIDEO_ATTRS = ("width", "height", "fps", "fps_nominal", "fps_average", "duration_s", "audio_offset_s",
                "audio_reason", "created_utc")


def describe_video(video: VideoGroup) -> dict[str, Any]:
    """One video: completeness, T, stream facts, source identity, every array, and features grouped by extractor.

    ``features[name]`` describes the array ``name`` (or the feature's first array, e.g. ``word_index`` for ``words``)
    and lists the other arrays its extractor wrote (e.g. ``mel64`` with ``mel64_time`` and ``mel64_row``);
    ``n_words`` counts the ``words`` attribute (None without one).
    """
    attrs = video.attrs
    arrays: dict[str, Any] = {}
    features: dict[str, Any] = {}
    for name in video.array_names():
        try:
            array = video.array(name)
        except StoreError as exc:  # a refused or unreadable array is described, not fatal (verify reports it)
            arrays[name] = {"error": str(exc)}
            continue
        provenance = array.attrs.get("provenance") or {}
        arrays[name] = {"shape": list(array.shape), "dtype": str(array.dtype),
                        "extractor": provenance.get("extractor")}
        feature = provenance.get("feature")
        if feature is not None:
            features.setdefault(feature, {"arrays": []})["arrays"].append(name)
    for feature, entry in features.items():  # a feature's own array, else its first (``words``: word_index)
        array = video.array(feature if feature in arrays else entry["arrays"][0])
        entry.update(shape=list(array.shape), dtype=str(array.dtype), provenance=array.attrs.get("provenance"))
    return {
        "video_id": video.video_id,
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
    videos = {video_id: describe_video(store.video(video_id)) for video_id in store.video_ids()}
    return {
        "store": store.location,
        "format": store.root.attrs.get("format"),
        "n_videos": len(videos),
        "n_complete": sum(v["complete"] for v in videos.values()),
        "failures": store.failures(),
        "claims": store.claims.listed(),
        "videos": videos,
    }

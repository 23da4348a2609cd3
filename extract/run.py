"""Batch extraction (``python -m extract``): videos in, one complete store group per video out, serially or on a
dask cluster (:mod:`extract.distributed`), resumable and failure-tolerant (:mod:`extract.pipeline`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from extract.distributed import DistributedRecipe, run_distributed
from extract.pipeline import Extraction, ExtractionError, RunReport, create_extractors
from extract.videos import VideoIdCollision, assign_video_ids, discover_videos
from features_store.store import FeatureStore

__all__ = ["Extraction", "ExtractionError", "RunReport", "VideoIdCollision", "assign_video_ids", "create_extractors",
           "run_extraction"]


def run_extraction(inputs: Sequence[str | Path], store_location: str, features: Sequence[str],
                   overwrite: bool = False, progress: bool = True, subject: str = "largest",
                   models_dir: str | Path | None = None,
                   settings: Mapping[str, Mapping[str, Any]] | None = None,
                   workers: int | None = None, scheduler: str | None = None) -> RunReport:
    """Extract ``features`` from the videos in ``inputs`` (files or directories) into the store.

    ``subject`` picks the person the face features describe: ``largest`` (groups ``<video>``), or ``left`` /
    ``right`` (groups ``<video>_left`` / ``<video>_right``, as Aff-Wild2's annotation files name them).
    ``models_dir`` is searched first for weights users bring (then ``$AFFECTSYNC_MODELS``, then ``models/``);
    ``settings`` sets config fields per feature (``{"face_crop": {"crop_size_px": 128}}``).
    ``workers`` (a local cluster of that many processes) or ``scheduler`` (the address of a running dask cluster)
    extract the videos in parallel, one task per video (:mod:`extract.distributed`); without them the run is serial."""
    extractors = create_extractors(features, subject, models_dir, settings)
    paths = discover_videos(inputs)
    assign_video_ids(paths)  # collisions stop the run before the store is touched
    store = FeatureStore(store_location, mode="a")
    if workers or scheduler:
        recipe = DistributedRecipe(tuple(features), subject, None if models_dir is None else str(models_dir),
                                   json.dumps(settings or {}, sort_keys=True), overwrite)
        return run_distributed(paths, store, recipe, workers=workers, scheduler=scheduler, progress=progress)
    return Extraction(store, extractors, overwrite, subject).run(paths, progress=progress)

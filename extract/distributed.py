"""Extraction on a dask.distributed cluster: one task per video, each task writing its own video group.

``workers=N`` starts a local cluster of N single-threaded worker processes (``make extract WORKERS=N``);
``scheduler="tcp://host:port"`` uses a running cluster whose workers have affectsync installed
(``SCHEDULER=``). Each worker process builds the extractors of a recipe once and keeps them, so models load once
per worker, not once per video. A video that fails comes back as a failure line; the others go on. The client
stamps the store before the tasks and consolidates its metadata once after them, from one process.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from extract.base import Extractor
from extract.pipeline import Extraction, RunReport, create_extractors
from extract.videos import subject_video_ids
from features_store.common import now_utc
from features_store.store import FeatureStore

_EXTRACTORS: dict[DistributedRecipe, list[Extractor]] = {}
"""In a worker process: the extractors of each recipe seen, built on its first task (models load once)."""
_BUILDS = [0]


@dataclass(frozen=True)
class DistributedRecipe:
    """What every task extracts, in a form that travels to workers (settings as JSON)."""

    features: tuple[str, ...]
    subject: str
    models_dir: str | None
    settings_json: str
    overwrite: bool

    def extractors(self) -> list[Extractor]:
        """This worker's extractors for the recipe, created on first use."""
        if self not in _EXTRACTORS:
            settings = {feature: {key: tuple(value) if isinstance(value, list) else value
                                  for key, value in fields.items()}
                        for feature, fields in json.loads(self.settings_json).items()}
            _EXTRACTORS[self] = create_extractors(self.features, self.subject, self.models_dir, settings)
            _BUILDS[0] += 1
        return _EXTRACTORS[self]


def extract_video_task(recipe: DistributedRecipe, store_location: str, video_id: str,
                       path: str) -> tuple[str, str, str, str | None]:
    """Runs on a worker: (video id, path, outcome, cause of a failure)."""
    extraction = Extraction(FeatureStore(store_location, mode="a"), recipe.extractors(), recipe.overwrite,
                            recipe.subject)
    return (video_id, path, *extraction.try_one(video_id, Path(path), wait=True))


def worker_extractor_builds() -> int:
    """Runs on a worker: how many times it built extractors (once per recipe; tests check it is not per video)."""
    return _BUILDS[0]


def run_distributed(paths: Sequence[Path], store: FeatureStore, recipe: DistributedRecipe,
                    workers: int | None = None, scheduler: str | None = None, progress: bool = True) -> RunReport:
    """Extract every video as one task on the cluster; a progress bar over videos as they complete."""
    from distributed import Client, LocalCluster, as_completed

    report_failure = (lambda line: tqdm.write(line, file=sys.stderr))
    ids = subject_video_ids(paths, recipe.subject)
    if scheduler:
        cluster, client = None, Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    report = RunReport()
    store.begin_writing(now_utc())
    location = store.location if "://" in store.location else str(Path(store.location).resolve())
    try:  # absolute paths: workers may run in another folder (or, on a shared filesystem, on another machine)
        futures = [client.submit(extract_video_task, recipe, location, video_id, str(Path(path).resolve()),
                                 pure=False, key=f"extract-{video_id}") for video_id, path in ids.items()]
        with tqdm(total=len(futures), desc="extract", unit="video", disable=not progress, file=sys.stderr) as bar:
            for future in as_completed(futures):
                video_id, path, outcome, cause = future.result()
                report.add(video_id, Path(path), outcome, cause, report_failure)
                bar.update()
    finally:
        report.record(store)
        client.close()
        if cluster is not None:
            cluster.close()
    return report

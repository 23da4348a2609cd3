"""Extracting videos into a store, one video group at a time: what the serial run and each dask task share.

Per video: decode once, run the requested extractors, write every array with its provenance, check the group
(:func:`features_store.verify.verify_video`), and only then write ``complete = true``. A run that dies leaves at most
one partial group, which the next run deletes and redoes; complete groups are skipped. Each video's group is
claimed while it is written (:mod:`features_store.claims`), so several runs can share a store.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from extract import registry
from extract.base import Extractor, FeatureArray, RowBlocks, VideoAttribute, library_versions
from extract.ingest import AUDIO_SAMPLE_RATE_HZ, DecodedVideo, IngestError, decode_video
from extract.videos import file_identity, subject_video_ids
from extract.weights import WeightsError
from features_store.common import now_utc
from features_store.errors import AffectsyncError, UsageError
from features_store.schema import ArraySchema
from features_store.store import FeatureStore
from features_store.verify import verify_video

INGEST_VERSION = "1"
FRAME_TIME_SCHEMA = ArraySchema(kind="time", units="s", description="presentation time of each decoded frame, "
                                "from the container timestamps")
CLAIM_POLL_S = 1.0
"""How often a run looks again at videos other writers hold, in seconds."""


class ExtractionError(AffectsyncError, RuntimeError):
    """One video could not be extracted; the runner reports it as a line and goes on with the others."""


@dataclass
class RunReport:
    """What a run did, per video id (failures keyed by the input path)."""

    extracted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)
    """The failures as the store records them: ``{"video_id", "source", "reason"}``."""

    def add(self, video_id: str, path: Path, outcome: str, cause: str | None,
            report_failure: Callable[[str], None]) -> None:
        if outcome == "failed":
            reason = cause or "unknown failure"
            self.failed[str(path)] = reason
            self.failures.append({"video_id": video_id, "source": str(path), "reason": reason})
            report_failure(f"FAILED {path} (video {video_id}): {reason}")
        else:
            (self.extracted if outcome == "extracted" else self.skipped).append(video_id)

    def record(self, store: FeatureStore) -> None:
        """Update the store's root attribute ``failures`` (this run's failures replace older entries of the same
        videos; videos this run extracted or found complete are no longer listed) and consolidate the metadata,
        holding the root claim so that concurrent writers' records are merged, not overwritten."""
        settled = {*self.extracted, *self.skipped, *(f["video_id"] for f in self.failures)}
        with store.updating_root():
            store.record_failures([f for f in store.failures() if f.get("video_id") not in settled]
                                  + self.failures)
            store.consolidate()


def video_attributes(video: DecodedVideo, identity: dict[str, Any]) -> dict[str, Any]:
    """Group attributes of a decoded video (JSON-ready); ``complete`` is added by the store."""
    return {
        **identity,
        "width": video.width, "height": video.height,
        "fps": video.fps_nominal, "fps_nominal": video.fps_nominal, "fps_average": video.fps_average,
        "n_frames": video.n_frames, "duration_s": video.duration_s,
        "first_frame_time_s": float(video.frame_time[0]),
        "n_frames_without_timestamp": video.n_frames_without_timestamp,
        "video_codec": video.video_codec,
        "audio_offset_s": video.audio_offset_s,
        "audio_reason": video.audio_reason,
        "audio_sample_rate_hz": AUDIO_SAMPLE_RATE_HZ,
        "audio_source_sample_rate_hz": video.audio.source_sample_rate_hz if video.audio else None,
        "audio_source_channels": video.audio.source_channels if video.audio else None,
        "audio_duration_s": video.audio.duration_s if video.audio else None,
        "audio_gaps_s": [list(gap) for gap in video.audio.gaps_s] if video.audio else [],
        "audio_frames_dropped": video.audio.n_frames_dropped if video.audio else 0,
        "declared_duration_s": video.declared_duration_s,
        "declared_n_frames": video.declared_n_frames,
    }


def _this_writer() -> dict[str, Any]:
    """The group attribute ``extracted_by``: the host and process that wrote the group."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _describe_failure(exc: Exception) -> str:
    """One line: the cause of an expected failure as is, the exception type too for anything unexpected."""
    if isinstance(exc, IngestError):
        return exc.cause
    if isinstance(exc, (AffectsyncError, OSError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _same_recipe(stored: dict[str, Any] | None, extractor: Extractor) -> bool:
    stored = stored or {}
    return stored.get("version") == extractor.version and stored.get("parameters") == extractor.parameters()


class Extraction:
    """Extracts a fixed list of features into one store; :meth:`run` takes the videos."""

    def __init__(self, store: FeatureStore, extractors: Sequence[Extractor], overwrite: bool = False,
                 subject: str = "largest"):
        self.store = store
        self.extractors = list(extractors)
        self.overwrite = overwrite
        self.subject = subject

    def run(self, paths: Sequence[Path], progress: bool = True,
            report_failure: Callable[[str], None] | None = None) -> RunReport:
        """Extract every video; a failure becomes one line (file and cause) and the others still complete.

        Videos another writer holds (see :mod:`features_store.claims`) are left for later; once the rest are
        done, the run waits for them and then skips them (done there) or extracts them (their writer died)."""
        report_failure = report_failure or (lambda line: tqdm.write(line, file=sys.stderr))
        pending = list(subject_video_ids(paths, self.subject).items())
        report = RunReport()
        self.store.begin_writing(now_utc())
        bar = tqdm(total=len(pending), desc="extract", unit="video", disable=not progress, file=sys.stderr)
        try:
            while pending:
                held_elsewhere = []
                for video_id, path in pending:
                    bar.set_postfix_str(video_id)
                    outcome, cause = self.try_one(video_id, path)
                    if outcome == "claimed":
                        held_elsewhere.append((video_id, path))
                        continue
                    report.add(video_id, path, outcome, cause, report_failure)
                    bar.update()
                if held_elsewhere:
                    bar.set_postfix_str(f"waiting for {len(held_elsewhere)} videos other writers hold")
                    time.sleep(CLAIM_POLL_S)
                pending = held_elsewhere
        finally:
            bar.close()
            report.record(self.store)
        return report

    def try_one(self, video_id: str, path: Path, wait: bool = False) -> tuple[str, str | None]:
        """(``"extracted"``, ``"skipped"``, ``"failed"`` or ``"claimed"``, a cause): one bad video must not stop
        the others. The video's group is claimed first; ``"claimed"`` (with its holder) means another live writer
        has it, unless ``wait``, which waits for it."""
        claims = self.store.claims
        while claims.try_claim(video_id) is None:
            if not wait:
                holder = claims.holder(video_id)
                return "claimed", holder.describe() if holder else None
            time.sleep(CLAIM_POLL_S)
        try:
            return ("extracted" if self.extract_one(video_id, path) else "skipped"), None
        except Exception as exc:  # noqa: BLE001
            return "failed", _describe_failure(exc)
        finally:
            claims.release(video_id)

    def extract_one(self, video_id: str, path: Path) -> bool:
        """Bring ``video_id`` up to date with the requested features; False when it already was (skipped)."""
        if not path.is_file():
            raise ExtractionError("no such file")
        identity = file_identity(path)
        todo = self._features_to_compute(video_id, identity)
        if not todo:
            return False
        video = decode_video(path)
        is_new = video_id not in self.store
        if is_new:
            group = self.store.create_video(video_id, {**video_attributes(video, identity), "subject": self.subject,
                                                       "created_utc": now_utc(), "extracted_by": _this_writer()})
        else:
            group = self.store.video(video_id)
            group.set_complete(False)  # adding features: the group is partial until they are all written
            group.set_attribute("extracted_by", _this_writer())
        try:
            self._write_features(group, video, todo, with_frame_time=is_new)
        except Exception:
            if is_new:
                self.store.delete_video(video_id)  # nothing of a failed new video stays behind
            raise
        return True

    def _write_features(self, group, video: DecodedVideo, todo: Sequence[Extractor], with_frame_time: bool) -> None:
        """Write the arrays of ``todo`` (and ``frame_time`` for a new group), check the group, mark it complete."""
        if with_frame_time:
            group.write("frame_time", video.frame_time, {
                "provenance": {"extractor": "decode_video", "version": INGEST_VERSION, "parameters": {},
                               "libraries": library_versions("affectsync", "av"), "created_utc": now_utc()}},
                        FRAME_TIME_SCHEMA)
        self._drop_stale_dependants(group, {extractor.name for extractor in todo})
        validity_written: set[str] = set()
        for extractor in todo:
            provenance = {**extractor.provenance(), "created_utc": now_utc()}
            for name, array in extractor.validity(video).items():  # shared by a modality's features: once
                if name not in validity_written:
                    shared = {key: value for key, value in provenance.items() if key != "feature"}
                    self._write(group, name, array, shared, video.n_frames)
                    validity_written.add(name)
            for name, output in extractor.extract(video, self._inputs(group, extractor)).items():
                if isinstance(output, VideoAttribute):
                    group.set_attribute(name, output.value)
                else:
                    self._write(group, name, extractor.stored(name, output), provenance, video.n_frames)
        problems = verify_video(group, require_complete=False)
        if problems:
            raise ExtractionError("written group failed its check: " + "; ".join(problems))
        if self.store.claims.lost(group.video_id):
            raise ExtractionError("another writer took over this video's claim (this run's heartbeat lapsed); "
                                  "its group is left to that writer")
        group.set_complete(True)

    @staticmethod
    def _drop_stale_dependants(group, redone: set[str]) -> None:
        """Delete the stored arrays of features built on a feature being redone (their provenance ``requires``),
        unless they are redone too: ``fer`` must never outlive the crops it was computed from."""
        provenance = {name: group.array(name).attrs.get("provenance") or {} for name in group.array_names()}
        for p in provenance.values():  # arrays written before provenance named requirements: ask the registry
            if "requires" not in p and p.get("feature"):
                try:
                    p["requires"] = list(registry.requirements_of(p["feature"]))
                except ValueError:
                    p["requires"] = []
        stale: set[str] = set()
        changed = True
        while changed:  # dependants of dependants too
            features = redone | {provenance[name].get("feature") for name in stale}
            found = {name for name, p in provenance.items() if p.get("feature") not in redone
                     and set(p.get("requires") or ()) & features}
            changed = not found <= stale
            stale |= found
        for name in sorted(stale):
            tqdm.write(f"{group.video_id}: removing {name!r}, computed from a feature being redone", file=sys.stderr)
            group.delete(name)

    def _inputs(self, group, extractor: Extractor) -> dict[str, Any]:
        """What an extractor builds on: the stored arrays its required features' ``extract`` wrote (their provenance
        names the feature; ``face_valid`` is one of them) and the group attributes those features declare."""
        if not extractor.requires:
            return {}
        inputs: dict[str, Any] = {name: group.array(name) for name in group.array_names()
                                  if (group.array(name).attrs.get("provenance") or {}).get("feature")
                                  in extractor.requires}
        attrs = group.attrs
        for required in self.extractors:
            if required.name in extractor.requires:
                inputs.update({name: attrs.get(name) for name in required.video_attributes})
        return inputs

    def _features_to_compute(self, video_id: str, identity: dict[str, Any]) -> list[Extractor]:
        """The extractors whose arrays ``video_id`` lacks; clears partial or replaced groups first."""
        if video_id not in self.store:
            return self.extractors
        group = self.store.video(video_id)
        replace = not group.complete or (
            group.attrs.get("source_sha256") != identity["source_sha256"] and self._may_overwrite(
                f"the store holds video id {video_id!r} from another file "
                f"({group.attrs.get('source_name')}, sha256 {str(group.attrs.get('source_sha256'))[:12]}...)"))
        if replace:
            self.store.delete_video(video_id)
            return self.extractors
        present = set(group.array_names())
        todo: list[Extractor] = []
        for extractor in self.extractors:  # requirements come first
            if extractor.primary_array not in present or set(extractor.requires) & {done.name for done in todo}:
                todo.append(extractor)  # missing, or built on a feature being redone
            elif not _same_recipe(group.array(extractor.primary_array).attrs.get("provenance"), extractor):
                if self._may_overwrite(f"feature {extractor.name!r} exists with another version or parameters"):
                    todo.append(extractor)
        return todo

    def _may_overwrite(self, conflict: str) -> bool:
        if not self.overwrite:
            raise ExtractionError(f"{conflict}; pass --overwrite to replace it, or use another store")
        return True

    @staticmethod
    def _write(group, name: str, array: FeatureArray, provenance: dict[str, Any], n_frames: int) -> None:
        if array.per_frame and array.data.shape[0] != n_frames:
            raise ExtractionError(f"{provenance['extractor']} produced {array.data.shape[0]} rows for "
                                  f"{name!r}, expected T={n_frames}")
        attrs = {**array.attrs, "provenance": provenance}
        if isinstance(array.data, RowBlocks):
            group.write_blocks(name, array.data.shape, array.data.dtype, array.data.blocks, attrs, array.schema)
        else:
            group.write(name, array.data, attrs, array.schema)


def create_extractors(features: Sequence[str], subject: str = "largest", models_dir: str | Path | None = None,
                      settings: Mapping[str, Mapping[str, Any]] | None = None) -> list[Extractor]:
    """The extractors for ``features`` and the features they build on, in running order, configured with
    ``settings`` (feature -> {config field: value}, from ``--set``), with every weights file resolved: missing ones
    raise one :class:`~extract.weights.WeightsError` naming each file and the ``make weights FEATURES=...`` line that
    brings them (and the route for machines without internet), before any video is touched."""
    names = registry.with_requirements(features)
    settings = settings or {}
    stray = set(settings) - set(names)
    if stray:
        raise UsageError(f"settings given for {', '.join(sorted(stray))}, which this run does not extract")
    extractors = [registry.create(name, models_dir=models_dir, overrides=settings.get(name), subject=subject)
                  for name in names]
    missing = {}
    for name, extractor in zip(names, extractors):
        try:
            extractor.check_weights()
        except WeightsError as exc:
            missing[name] = str(exc)  # as the user named it (onnx:<name>, hf_audio:<name>)
    if missing:
        names = ",".join(missing)
        raise WeightsError("; ".join(missing.values()) + f". Run `make weights FEATURES={names}` (python -m extract "
                           f"models fetch {names.replace(',', ' ')}) to download, verify and pin them; without "
                           "internet, `python -m extract models pack models.tar` on a machine that has them and "
                           "`python -m extract models unpack models.tar` here")
    return extractors

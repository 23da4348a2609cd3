"""Per-frame predictions of a trained model: windows over each video, overlapping windows averaged per frame.

Outputs per task, averaged over every window that covers a frame: ``va`` (T, 2) values in [-1, 1]; ``expr`` (T, C)
class probabilities; ``au`` (T, K) probabilities. :func:`write_prediction_csvs` turns them into one CSV per video,
``<video_id>.csv`` with ``frame,time_s,<task columns>`` (the frame's time in seconds; ``valence,arousal`` / ``expr`` as
a class index / the AU names as 0/1).

A run knows what it was trained on: its ``config.json`` holds each input feature's recipe (its provenance without
the time it was made), and :func:`predict_store` refuses a store whose features were extracted otherwise, naming the
feature and the settings that differ, unless told to go on.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from eval.runs import model_dirs
from eval.tasks import TASK_ORDER, TaskSpec, tasks_from_json
from features_store import FeatureStore
from features_store.common import out_of_memory_names
from features_store.recipes import differing_keys
from train.clips import ClipSpec
from train.features import FeatureError, Standardiser, StoreFeatures
from train.models import build_model
from train.post_processing import PostProcessing
from train.windows import WindowBatches, WindowConfig

LOG = logging.getLogger("affectsync.train")


def scoring_windows(config: WindowConfig) -> WindowConfig:
    """Sliding windows for prediction: the training windows' length and hop (random sampling too: M3T predicts on
    clips one hop apart)."""
    return WindowConfig(length_frames=config.length_frames, hop_frames=config.hop_frames, sampling="sliding")


def to_frame_outputs(task: str, output: torch.Tensor) -> torch.Tensor:
    """A model's raw output for ``task`` as what is averaged over windows (values or probabilities)."""
    if task == "expr":
        return torch.softmax(output.float(), dim=-1)
    if task == "au":
        return torch.sigmoid(output.float())
    return output.float()


@torch.no_grad()
def predict_frames(model: torch.nn.Module, features: StoreFeatures, video_ids: Sequence[str],
                   window: WindowConfig, device: torch.device, batch_size: int = 16
                   ) -> dict[str, dict[str, np.ndarray]]:
    """video id -> task -> per-frame outputs (see the module docstring): VA values and class/AU probabilities (not
    logits) averaged over the overlapping windows that cover each frame."""
    model.eval()
    sums: dict[str, dict[str, np.ndarray]] = {}
    counts = {vid: np.zeros(features.n_frames[vid], np.float32) for vid in video_ids}
    batches = WindowBatches(features, list(video_ids), scoring_windows(window), batch_size)
    for batch in batches.batches():
        inputs, frame_mask, _, _ = batch.to(device)
        with out_of_memory_names("--batch-size", batch_size):
            raw = model(inputs, frame_mask)
        outputs = {task: to_frame_outputs(task, out).cpu().numpy() for task, out in raw.items()}
        for i, w in enumerate(batch.windows):
            size = w.stop - w.start
            counts[w.video_id][w.start:w.stop] += 1
            by_task = sums.setdefault(w.video_id, {})
            for task, out in outputs.items():
                if task not in by_task:
                    by_task[task] = np.zeros((features.n_frames[w.video_id], out.shape[-1]), np.float32)
                by_task[task][w.start:w.stop] += out[i, :size]
    return {vid: {task: total / counts[vid][:, None] for task, total in by_task.items()}
            for vid, by_task in sums.items()}


def _as_text(decisions: np.ndarray) -> np.ndarray:
    """(T, C) strings: floats with 6 decimals, integers as they are."""
    decisions = decisions.reshape(len(decisions), -1)
    return np.char.mod("%.6f" if decisions.dtype.kind == "f" else "%d", decisions)


def write_prediction_csvs(predictions: Mapping[str, Mapping[str, np.ndarray]], tasks: Mapping[str, TaskSpec],
                          out_dir: Path, frame_time: Callable[[str], np.ndarray],
                          post: PostProcessing = PostProcessing()) -> list[Path]:
    """One ``<video_id>.csv`` per video in ``out_dir``: header ``frame,time_s,<task columns>``, one row per frame,
    the decisions ``post`` makes; ``frame_time(video_id)`` gives the (T,) frame times in seconds."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for vid, by_task in predictions.items():
        ordered = [t for t in TASK_ORDER if t in by_task and t in tasks]
        columns = [c for t in ordered for c in tasks[t].prediction_columns]
        cells = [_as_text(post.decide(t, by_task[t])) for t in ordered]
        path = out_dir / f"{vid}.csv"
        tmp = path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["frame", "time_s", *columns])
            times = np.char.mod("%.6f", frame_time(vid))
            for frame, row in enumerate(np.concatenate(cells, axis=1).tolist()):
                writer.writerow([frame, times[frame], *row])
        tmp.replace(path)
        written.append(path)
    return written


def load_trained(model_dir: Path, device: torch.device) -> tuple[torch.nn.Module, dict, dict[str, TaskSpec],
                                                                  Standardiser]:
    """The model of ``model_dir`` (weights loaded with ``weights_only=True``), its config, tasks and standardiser."""
    config = json.loads((model_dir / "config.json").read_text())
    tasks = tasks_from_json(config["tasks"])
    model_config = config["model"]
    settings = {key: "" if key.startswith("pretrained") else value  # the run's weights replace any pretrained ones
                for key, value in model_config["config"].items()}
    model = build_model(model_config["name"], model_config["modality_dims"], list(tasks.values()), **settings)
    model.load_state_dict(torch.load(model_dir / "model.pt", map_location="cpu", weights_only=True))
    model.to(device)
    return model, config, tasks, Standardiser.load(model_dir / "normalisation.npz")


def check_recipes(trained: Mapping[str, dict] | None, found: Mapping[str, dict], where: str) -> None:
    """A :class:`FeatureError` naming each feature whose recipe in the store (``found``) differs from the one the
    model was trained on (``trained``, from its config.json; runs made before recipes were recorded have none)."""
    if trained is None:
        LOG.warning("%s: the run does not record the recipes of its features; the store's are not checked", where)
        return
    differences = {feature: differing_keys(trained.get(feature), found[feature]) for feature in found}
    differences = {feature: keys for feature, keys in differences.items() if keys}
    if differences:
        said = "; ".join(f"feature {feature!r} differs in {', '.join(keys)}" for feature, keys in differences.items())
        raise FeatureError(f"{where}: the store's features were extracted otherwise than the model's ({said}); "
                           "re-extract them as the run's config.json records, or pass --allow-other-recipes")


def predict_store(run_dir: Path, store_location: str, out_dir: Path, device: torch.device,
                  progress: bool = True, allow_other_recipes: bool = False,
                  batch_size: int | None = None, post_processing: bool = True) -> list[Path]:
    """Predict every complete video of a store with each model of ``run_dir``; CSVs in ``out_dir`` (``fold<k>/``
    sub-folders for a multi-fold run: fusing folds is eval's job). Videos lacking a feature the model needs, and
    features extracted with another recipe than the model was trained on (unless ``allow_other_recipes``), are errors
    naming them. ``batch_size``: windows per forward pass (default: the run's training batch size).
    ``post_processing``: apply the smoothing and AU thresholds the run chose on validation (its config.json's
    ``"post_processing"``), or write the decisions of the raw outputs."""
    store = FeatureStore(store_location)
    video_ids = list(store.complete_n_frames())
    written = []
    dirs = model_dirs(run_dir)
    features = None
    for model_dir in tqdm(dirs, desc="models", disable=not progress or len(dirs) == 1):
        model, config, tasks, standardiser = load_trained(model_dir, device)
        clips = ClipSpec.of(model.config)
        if features is None or features.features != config["features"] or (features.clips and
                                                                              features.clips.spec != clips):
            features = StoreFeatures(store, config["features"], video_ids, clips=clips, group_by=model.spec.group_by)
        found = json.loads(json.dumps(features.model_inputs))  # tuples as config.json holds them (lists)
        if found != config["modality_dims"]:
            raise FeatureError(f"{store_location}: input sizes {found} differ from the model's "
                               f"{config['modality_dims']} ({model_dir})")
        if not allow_other_recipes:
            check_recipes(config.get("feature_recipes"), features.recipes, f"{store_location} ({model_dir})")
        features.use_standardiser(standardiser)
        window = WindowConfig(**config["window"])
        predictions = predict_frames(model, features, video_ids, window, device,
                                     batch_size or config["optim"]["batch_size"])
        target = out_dir if len(dirs) == 1 else out_dir / model_dir.name
        post = PostProcessing.from_json(config.get("post_processing") if post_processing else None)
        written += write_prediction_csvs(predictions, tasks, target, features.frame_time, post)
    return written

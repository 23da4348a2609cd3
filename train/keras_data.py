"""The trainer's windows as a ``keras.utils.PyDataset``, for teams that train with Keras (as seed 002 did).

Each item is ``(x, y, sample_weight)``: ``x`` modality -> (B, L, D_m) standardised features, ``y`` task -> labels
(``va`` (B, L, 2), ``expr`` (B, L) class indices, ``au`` (B, L, K)), ``sample_weight`` task -> (B, L) float32, 1 on
frames to learn from and 0 on padding and invalid labels. Keras runs on the torch backend here
(``KERAS_BACKEND=torch`` unless set otherwise), so no TensorFlow is needed.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402

from features_store import FeatureStore  # noqa: E402
from train.experiment import label_masks  # noqa: E402
from train.features import StoreFeatures  # noqa: E402
from train.folds import make_folds  # noqa: E402
from train.labels import fit_to_frames, load_labels  # noqa: E402
from train.windows import WindowBatches, WindowConfig  # noqa: E402


class KerasWindows(keras.utils.PyDataset):
    """Batches of :class:`~train.windows.WindowBatches` for ``model.fit``; random windows are redrawn each epoch."""

    def __init__(self, batches: WindowBatches, **kwargs):
        super().__init__(**kwargs)
        self.batches = batches
        self.epoch = 0
        self._groups = self._group()

    def _group(self):
        windows = self.batches.windows(self.epoch)
        size = self.batches.batch_size
        return [windows[i:i + size] for i in range(0, len(windows), size)]

    def __len__(self) -> int:
        return len(self._groups)

    def __getitem__(self, index: int):
        batch = self.batches.assemble(self._groups[index])
        weights = {task: mask.astype("float32") for task, mask in batch.label_masks.items()}
        return batch.inputs, batch.labels, weights

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._groups = self._group()

    @classmethod
    def from_store(cls, store: str, labels: str, features: list[str], role: str = "train",
                   window: WindowConfig = WindowConfig(), batch_size: int = 8, tasks: list[str] | None = None,
                   label_columns: dict[str, str] | None = None, fold: int = 0, n_folds: int = 1,
                   **kwargs) -> KerasWindows:
        """Windows of the ``role`` (``train``/``val``) videos of fold ``fold``, standardised on its training videos."""
        feature_store = FeatureStore(store)
        label_set = load_labels(labels, tasks, label_columns)
        n_frames = {v: feature_store.video(v).n_frames for v in feature_store.video_ids()
                    if feature_store.video(v).complete}
        aligned, _ = fit_to_frames(label_set, n_frames)
        video_ids = sorted(aligned)
        labelled = {t: [v for v in video_ids if spec.valid(aligned[v][t]).any()] for t, spec in label_set.tasks.items()}
        chosen = make_folds(labelled, label_set.splits, n_folds)[fold]
        store_features = StoreFeatures(feature_store, features, video_ids)
        store_features.fit_standardiser(chosen.videos("train"))
        masks = label_masks(chosen, label_set.tasks, aligned, role)
        batches = WindowBatches(store_features, chosen.videos(role), window, batch_size, labels=aligned,
                                label_masks=masks, shuffle=role == "train")
        return cls(batches, **kwargs)

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

from train.experiment import Experiment, ExperimentConfig, label_masks  # noqa: E402
from train.windows import ABAW3_WINDOWS, WindowBatches, WindowConfig  # noqa: E402


class KerasWindows(keras.utils.PyDataset):
    """Batches of :class:`~train.windows.WindowBatches` for ``model.fit``; random windows are redrawn each epoch."""

    def __init__(self, batches: WindowBatches, **kwargs):
        super().__init__(**kwargs)
        self.batches = batches
        self.epoch = 0
        self._groups = self._group()

    def _group(self):
        return self.batches.groups(self.epoch)

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
                   window: WindowConfig = ABAW3_WINDOWS, batch_size: int = 8, tasks: list[str] | None = None,
                   label_columns: dict[str, str] | None = None, fold: int = 0, n_folds: int = 1,
                   **kwargs) -> KerasWindows:
        """Windows of the ``role`` (``train``/``val``) videos of fold ``fold``, standardised on its training videos,
        prepared exactly as ``python -m train`` prepares them (labels aligned, folds, label masks)."""
        config = ExperimentConfig(store=store, labels=labels, features=tuple(features),
                                  tasks=tuple(tasks) if tasks else None, label_columns=label_columns or {},
                                  folds=n_folds)
        prepared = Experiment(config)
        chosen = prepared.folds[fold]
        prepared.features.fit_standardiser(chosen.videos("train"))
        masks = label_masks(chosen, prepared.tasks, prepared.labels, role)
        batches = WindowBatches(prepared.features, chosen.videos(role), window, batch_size, labels=prepared.labels,
                                label_masks=masks, shuffle=role == "train")
        return cls(batches, **kwargs)

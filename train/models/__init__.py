"""Sequence models for frame-synchronous affect prediction, each a named config (``MODEL=``) in :data:`MODELS`.

Every model is built as ``module_class(modality_dims, tasks, config)`` and called as
``model(inputs, frame_mask=None) -> {task name: (B, L, n_outputs)}`` with ``inputs`` a dict modality name ->
(B, L, D_m) float32 and ``frame_mask`` (B, L) bool (True on real frames, False on zero padding at the end of a
window). ``va`` comes through tanh; ``expr`` and ``au`` are logits. See :mod:`train.models.base` for the contract.
The trunk models (:mod:`train.models.trunks`: ``tsav``, ``m3t_3dvgg``, ``tdnn_transformer``, ``frame_cnn``) also take
the face clips and sub-spectrograms of :mod:`train.clips`; their ``modality_dims`` give those inputs' per-frame shapes.

>>> model = build_model("m3t_concat", {"audio": 128, "face": 512}, [va_task()], gru_hidden=256)
>>> model_config_dict(model)["config"]["gru_hidden"]
256
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from eval.tasks import TASK_ORDER, TaskSpec, au_task, expr_task, va_task

from ..windows import ABAW3_WINDOWS, WindowConfig
from .base import SequenceModel
from .gru import GruSeed002, GruSeed002Config, M3TAttention, M3TAttentionConfig, M3TConcat, M3TConcatConfig
from .heads import TaskHeads
from .tcn import TcnCoAttention, TcnCoAttentionConfig, TsavTcn, TsavTcnConfig, co_attention
from .transformer import TransformerSeed001, TransformerSeed001Config
from .trunks import TRUNK_MODELS

__all__ = [
    "DEFAULT_MODEL", "MODELS", "REFERENCE_MODALITY_DIMS", "TRUNK_INPUTS_NOTE", "ModelSpec", "SequenceModel",
    "TaskHeads", "build_model", "build_model_from_config", "co_attention", "count_parameters", "format_models_table",
    "model_config", "model_config_dict", "model_names", "reference_parameter_counts",
]


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its name, a one-line description naming the seed paper, config and module classes, and the
    windows its paper trained on (the trainer's default for this model; ``--window``/``--hop``/``--sampling``
    override them)."""

    name: str
    description: str
    config_class: type
    module_class: type
    tasks: tuple[str, ...] = ("va", "expr", "au")
    windows: WindowConfig = ABAW3_WINDOWS
    group_by: Literal["modality", "feature"] = "modality"
    """How vector features reach the model: one input per modality (concatenated), or one per feature (routing)."""
    reference_inputs: Mapping[str, Any] | None = None
    """The inputs its parameter count is given for (None: :data:`REFERENCE_MODALITY_DIMS`)."""


M3T_WINDOWS = WindowConfig(length_frames=32, hop_frames=32, sampling="random", random_windows_per_video=16)
"""M3T (Sec. III-B): random 32-frame windows each epoch, non-overlapping clips at inference. The paper draws 200 per
video per epoch; 16 here keeps an epoch of a small store short (``--windows-per-video 200`` for the paper's)."""
SEED002_WINDOWS = WindowConfig(length_frames=15, hop_frames=10)
"""Seed 002 (Sec. II-A): sequences of 15 frames overlapping by 5."""
SEED001_WINDOWS = WindowConfig(length_frames=30, hop_frames=15)
"""Seed 001 (Sec. 4.2): 30-frame input sequences (the hop is not given; half a window here)."""


MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (
    ModelSpec("m3t_concat", "M3T (ABAW 2020, seed 000): 512-d projections -> concat -> 2-layer bi-GRU 512 -> FC",
              M3TConcatConfig, M3TConcat, windows=M3T_WINDOWS),
    ModelSpec("m3t_attention", "M3T (ABAW 2020, seed 000): bi-GRU quality scores -> softmax fusion (eq. 5-6) -> "
              "2-layer bi-GRU 512 -> FC", M3TAttentionConfig, M3TAttention, windows=M3T_WINDOWS),
    ModelSpec("gru_seed002", "audio-video GRU (ABAW 2020, seed 002): GRU stacks per modality -> concat -> dense 64 -> "
              "tanh", GruSeed002Config, GruSeed002, windows=SEED002_WINDOWS),
    ModelSpec("tcn_coattention", "ABAW3 co-attention (seed 003): causal TCN per modality -> (softmax(QK^T/sqrt(d_K)) "
              "+ 1) V -> + visual encoding -> FC", TcnCoAttentionConfig, TcnCoAttention),
    ModelSpec("transformer_seed001", "AU+EXPR multitask (ABAW 2021, seed 001): concat -> fusion layer -> 1-layer "
              "transformer encoder -> FC", TransformerSeed001Config, TransformerSeed001, windows=SEED001_WINDOWS),
    ModelSpec("tsav_tcn", "TSAV (ABAW 2020, seed 004): per-stream temporal conv (visual clip 8 x dilation 6, "
              "aural 10 s centred) -> concat -> FC", TsavTcnConfig, TsavTcn),
)}

DEFAULT_MODEL = "m3t_concat"

REFERENCE_MODALITY_DIMS: dict[str, int] = {"audio": 128, "word": 768, "face": 512}
"""The input for :func:`reference_parameter_counts`: VGGish-like audio, BERT words, 512-d face embeddings."""

TSAV_WINDOWS = WindowConfig(length_frames=8, hop_frames=8)
"""TSAV predicts each frame from its own clip and sub-spectrogram; a window groups 8 consecutive frames, whose clips
come from one read of the store (sliding and shuffled: every training frame once per epoch)."""
FRAME_CNN_WINDOWS = WindowConfig(length_frames=32, hop_frames=16)
"""A CNN per frame end to end: 32-frame windows (ABAW3's 300 are for its cached features, not for fine-tuning)."""
TRUNK_WINDOWS = {"tsav": TSAV_WINDOWS, "m3t_3dvgg": M3T_WINDOWS, "tdnn_transformer": SEED001_WINDOWS,
                 "frame_cnn": FRAME_CNN_WINDOWS}
TRUNK_REFERENCE_INPUTS = {
    "tsav": {"face_clip": (8, 128, 128, 4), "spectrogram": (1001, 64)},
    "m3t_3dvgg": {"face_clip": (1, 128, 128, 3), "fer": 8, "senet": 2048},
    "tdnn_transformer": {"spectrogram": (41, 64), "iresnet": 512},
    "frame_cnn": {"face_clip": (1, 128, 128, 3)},
}
"""Each trunk's inputs for its parameter count: TSAV's RGB + mask clips and 10 s of mel64; M3T's crops with FER
probabilities and SENet features; seed 001's fine mel with IResNet embeddings; a 128 px crop per frame."""
TRUNK_INPUTS_NOTE = "trunks counted for " + "; ".join(
    f"{name} " + ", ".join(f"{key} {dims}" for key, dims in inputs.items())
    for name, inputs in TRUNK_REFERENCE_INPUTS.items())
MODELS.update({name: ModelSpec(name, description, config_class, module_class, tasks, TRUNK_WINDOWS[name],
                               "feature" if name == "m3t_3dvgg" else "modality", TRUNK_REFERENCE_INPUTS[name])
               for name, (config_class, module_class, tasks, description) in TRUNK_MODELS.items()})

_TASK_FACTORIES = {"va": va_task, "expr": expr_task, "au": au_task}


def model_names() -> list[str]:
    """Registered model names in display order (the default first)."""
    return list(MODELS)


def _get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    return MODELS[name]


def _as_task(task: Any) -> TaskSpec:
    if isinstance(task, TaskSpec):
        return task
    if isinstance(task, str):
        if task not in _TASK_FACTORIES:
            raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(TASK_ORDER)}")
        return _TASK_FACTORIES[task]()
    if isinstance(task, Mapping):  # as written by model_config_dict
        return TaskSpec(task["name"], tuple(task["columns"]), task.get("protocol", "abaw2022"))
    raise TypeError(f"a task must be a TaskSpec, a task name or a dict; got {task!r}")


def _tuples(value: Any) -> Any:
    """Lists (as JSON gives them back) -> tuples, recursively, so configs stay hashable."""
    if isinstance(value, list | tuple):
        return tuple(_tuples(item) for item in value)
    return value


def build_model(name: str, modality_dims: Mapping[str, int], tasks: Sequence[TaskSpec | str],
                **overrides: Any) -> nn.Module:
    """Model ``name`` for ``modality_dims`` (modality -> feature size, in input order) predicting ``tasks``.

    ``tasks``: TaskSpecs (or task names, meaning the ABAW3 coding, or dicts from :func:`model_config_dict`).
    ``overrides`` replace fields of the model's config dataclass. ValueError on an unknown model name (lists the
    names), an unknown override (lists the fields), a task the model does not support, or invalid sizes.
    The result has ``.spec`` (ModelSpec) and ``.config`` (the config instance).
    """
    spec = _get_spec(name)
    config = model_config(name, **overrides)
    task_specs = [_as_task(task) for task in tasks]
    unsupported = [task.name for task in task_specs if task.name not in spec.tasks]
    if unsupported:
        raise ValueError(f"model {name!r} does not support task(s) {', '.join(unsupported)}; it supports "
                         f"{', '.join(spec.tasks)}")
    model = spec.module_class({key: _tuples(dims) for key, dims in modality_dims.items()}, task_specs, config)
    model.spec = spec
    return model


def model_config(name: str, **overrides: Any) -> Any:
    """The config dataclass of model ``name`` with ``overrides`` (ValueError on an unknown field, listing them)."""
    spec = _get_spec(name)
    fields = [field.name for field in dataclasses.fields(spec.config_class)]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"model {name!r} has no config field(s) {', '.join(unknown)}; valid fields: "
                         f"{', '.join(fields)}")
    return spec.config_class(**{key: _tuples(value) for key, value in overrides.items()})


def model_config_dict(model: nn.Module) -> dict[str, Any]:
    """JSON-ready description that :func:`build_model_from_config` rebuilds the same architecture from:
    ``{"name", "config" (dataclasses.asdict), "modality_dims", "tasks" (list of {"name", "columns", "protocol"})}``."""
    if getattr(model, "spec", None) is None:
        raise ValueError("model_config_dict needs a model made by build_model (it has no .spec)")
    return {
        "name": model.spec.name,
        "config": dataclasses.asdict(model.config),
        "modality_dims": dict(model.modality_dims),
        "tasks": [{"name": task.name, "columns": list(task.columns), "protocol": task.protocol}
                  for task in model.tasks],
    }


def build_model_from_config(config: Mapping[str, Any]) -> nn.Module:
    """Inverse of :func:`model_config_dict` (weights not included: load the state dict afterwards)."""
    return build_model(config["name"], config["modality_dims"], config["tasks"], **config.get("config", {}))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def reference_parameter_counts() -> dict[str, int]:
    """Trainable parameters of every registered model (default config) for :data:`REFERENCE_MODALITY_DIMS` and the
    three ABAW3 tasks (VA 2, EXPR 8 classes, AU 12), in registry order."""
    counts = {}
    for name, spec in MODELS.items():
        tasks = [_TASK_FACTORIES[task]() for task in TASK_ORDER if task in spec.tasks]
        counts[name] = count_parameters(build_model(name, spec.reference_inputs or REFERENCE_MODALITY_DIMS, tasks))
    return counts


def format_models_table() -> str:
    """The text of ``python -m train models``: name, reference parameter count and description, default marked."""
    counts = reference_parameter_counts()
    dims = ", ".join(f"{name} {dim}" for name, dim in REFERENCE_MODALITY_DIMS.items())
    lines = [f"models (MODEL=; parameters for inputs {dims} and tasks va+expr+au):"]
    width = max(len(name) for name in MODELS) + 2
    for name, spec in MODELS.items():
        marker = "*" if name == DEFAULT_MODEL else " "
        lines.append(f"{marker} {name:<{width}}{counts[name]:>12,}  {spec.description}")
    lines.append("* default; " + TRUNK_INPUTS_NOTE)
    return "\n".join(lines)

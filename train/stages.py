"""Training in stages: start from a previous run's weights (``--init-from RUN``) and freeze named modules
(``--freeze NAME``).

The papers train their trunks in stages: M3T trains each single-modality trunk, then the fusion with the trunks frozen
for 3 epochs, then everything end to end; ABAW3 fine-tunes its ResNet-50 with the backbone frozen, then layer4, then
the last blocks of layer3. Each stage is one run: ``--init-from`` copies every weight of the previous run whose name
and shape match (a trunk run's ``visual.*`` into a fusion model's ``visual.*``), ``--freeze`` keeps modules as they
are (their parameters get no gradient, their batch norms keep their statistics).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from features_store.errors import AffectsyncError

LOG = logging.getLogger("affectsync.train")


class StageError(AffectsyncError, ValueError):
    """A previous run or a module to freeze cannot be used as asked."""


def run_weights_file(run_dir: str | Path, fold_index: int) -> Path:
    """The ``model.pt`` of a run for fold ``fold_index``: the run's own, or its ``fold<k>/`` one."""
    run_dir = Path(run_dir)
    for candidate in (run_dir / "model.pt", run_dir / f"fold{fold_index}" / "model.pt"):
        if candidate.is_file():
            return candidate
    raise StageError(f"--init-from {run_dir}: no model.pt there (nor in fold{fold_index}/); give a run directory "
                     "of python -m train")


def init_from_run(model: nn.Module, run_dir: str | Path, fold_index: int = 0) -> dict[str, list[str]]:
    """Copy into ``model`` every tensor of the run's weights whose name and shape match. Returns ``{"loaded",
    "skipped" (in the run, not matching), "kept" (the model's, not in the run)}`` names; none loaded is an error."""
    path = run_weights_file(run_dir, fold_index)
    previous = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    loaded = [name for name, tensor in previous.items() if name in own and own[name].shape == tensor.shape]
    if not loaded:
        raise StageError(f"--init-from {path}: none of its {len(previous)} weights matches this model's names and "
                         f"shapes (it has e.g. {', '.join(list(previous)[:3])})")
    model.load_state_dict({name: previous[name] for name in loaded}, strict=False)
    report = {"loaded": loaded, "skipped": [name for name in previous if name not in loaded],
              "kept": [name for name in own if name not in previous]}
    LOG.info("init from %s: %d weights loaded, %d of the run's skipped, %d of the model's start fresh", path,
             len(loaded), len(report["skipped"]), len(report["kept"]))
    return report


def freeze(model: nn.Module, names: Sequence[str]) -> list[str]:
    """Freeze the modules ``names`` (dotted paths as in the state dict, e.g. ``visual`` or ``backbone.layer3``): no
    gradients, batch norms in eval mode (see :func:`keep_frozen_in_eval`). Returns the frozen parameters' names."""
    modules = dict(model.named_modules())
    unknown = [name for name in names if name not in modules or not name]
    if unknown:
        top = sorted({name.split(".")[0] for name in modules if name})
        raise StageError(f"--freeze {', '.join(unknown)}: no such module; this model's modules are "
                         f"{', '.join(top)} (and their dotted sub-modules)")
    frozen: list[str] = []
    if not names:
        return frozen
    for name in names:
        for parameter_name, parameter in modules[name].named_parameters(prefix=name):
            parameter.requires_grad_(False)
            frozen.append(parameter_name)
    model.frozen_modules = tuple(names)
    LOG.info("frozen: %s (%d tensors)", ", ".join(names), len(frozen))
    return frozen


def keep_frozen_in_eval(model: nn.Module) -> None:
    """After ``model.train()``: put the frozen modules back in eval mode, so batch norms keep their statistics and
    dropout stays off."""
    for name in getattr(model, "frozen_modules", ()):
        model.get_submodule(name).eval()

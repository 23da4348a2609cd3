"""``python -m train``: train over a store (``make train``), list the models, or predict with a run.

    python -m train --store S --labels L [--features a,b] [--tasks va,expr] [--model NAME] [--folds N] [--name RUN]
    python -m train models
    python -m train predict RUN STORE --out DIR

Training prints progress on stderr; the last line on stdout is the run directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from datetime import datetime
from pathlib import Path

from features_store.cli import ArgumentParser, parse_assignment, run_command
from features_store.common import pick_device
from train.experiment import Experiment, ExperimentConfig
from train.loop import OptimConfig
from train.losses import LossConfig
from train.models import DEFAULT_MODEL, MODELS, reference_parameter_counts
from train.models import REFERENCE_MODALITY_DIMS
from train.predict import predict_store
from train.windows import WindowConfig


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _pairs(items: list[str], what: str, example: str, as_json: bool = True) -> dict[str, object]:
    """``KEY=VALUE`` items (see :func:`features_store.cli.parse_assignment`)."""
    return dict(parse_assignment(item, what, example, as_json) for item in items)


def train_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m train", description="Train a sequence model on a feature store.")
    p.add_argument("--store", required=True, help="feature store (path or URL)")
    p.add_argument("--labels", required=True, help="folder of Aff-Wild2 challenge folders, or a generic CSV")
    p.add_argument("--features", type=_csv, default=(), help="comma-separated features (default: every per-frame one)")
    p.add_argument("--tasks", type=_csv, default=None, help="restrict to these of va,expr,au")
    p.add_argument("--label-column", action="append", default=[], metavar="TASKCOL=CSVCOL",
                   help="generic CSV: which column holds a task column, e.g. expr=intended_emotion")
    p.add_argument("--model", default=DEFAULT_MODEL, choices=list(MODELS))
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="model config override")
    p.add_argument("--folds", type=int, default=1, help="1: the official split; 6: ABAW3's 6-fold CV")
    p.add_argument("--name", default=None, help="run name (default: model, features and time)")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--window", type=int, dest="length_frames", help="window length, frames (default: the model's "
                   "paper's, see `python -m train models`)")
    p.add_argument("--hop", type=int, dest="hop_frames", help="window hop, frames (also the prediction hop)")
    p.add_argument("--sampling", choices=("sliding", "random"),
                   help="sliding windows, or random ones each epoch (M3T)")
    p.add_argument("--windows-per-video", type=int, dest="random_windows_per_video",
                   help="random sampling: windows per video per epoch")
    p.add_argument("--epochs", type=int, default=OptimConfig.epochs)
    p.add_argument("--batch-size", type=int, default=OptimConfig.batch_size)
    p.add_argument("--optimizer", choices=("adam", "adamw"), default=OptimConfig.optimizer)
    p.add_argument("--lr", type=float, default=OptimConfig.learning_rate)
    p.add_argument("--weight-decay", type=float, default=OptimConfig.weight_decay)
    p.add_argument("--warmup-epochs", type=int, default=OptimConfig.warmup_epochs)
    p.add_argument("--plateau-patience", type=int, default=OptimConfig.plateau_patience,
                   help="epochs without improvement before the learning rate is cut")
    p.add_argument("--plateau-factor", type=float, default=OptimConfig.plateau_factor)
    p.add_argument("--patience", type=int, default=OptimConfig.early_stopping_patience,
                   help="epochs without improvement before training stops")
    p.add_argument("--no-mixed-precision", action="store_true", help="CUDA: train in float32")
    p.add_argument("--seed", type=int, default=OptimConfig.seed)
    p.add_argument("--expr-loss", choices=("ce", "focal"), default=LossConfig.expr_loss)
    p.add_argument("--lambda-expr", type=float, default=LossConfig.lambda_expr,
                   help="weight of the EXPR loss: L = 0.5 (L_V + L_A) + lambda_expr L_EXPR + lambda_au L_AU")
    p.add_argument("--lambda-au", type=float, default=LossConfig.lambda_au)
    p.add_argument("--schedule", choices=("joint", "epoch", "batch"), default=LossConfig.schedule,
                   help="multi-task updates: all tasks each step, or alternating per epoch / per batch")
    p.add_argument("--filter-labels", action="store_true", help="TSAV: drop inconsistent VA/EXPR frames")
    p.add_argument("--pseudo-labels", action="store_true", help="TSAV: VA pseudo-labels for EXPR-only frames")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def model_windows(args: argparse.Namespace) -> WindowConfig:
    """The model's own windows with any of --window/--hop/--sampling/--windows-per-video applied."""
    given = {name: getattr(args, name) for name in ("length_frames", "hop_frames", "sampling",
                                                    "random_windows_per_video") if getattr(args, name) is not None}
    return dataclasses.replace(MODELS[args.model].windows, **given)


def run_training(argv: list[str]) -> int:
    args = train_parser().parse_args(argv)
    features = "+".join(args.features) if args.features else "all"
    name = args.name or f"{args.model}_{features}_{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    config = ExperimentConfig(
        store=args.store, labels=args.labels, features=args.features, tasks=args.tasks,
        label_columns=_pairs(args.label_column, "TASKCOL=CSVCOL", "expr=intended_emotion", as_json=False),
        model=args.model, model_overrides=_pairs(args.set, "FIELD=VALUE", "gru_hidden=128"),
        folds=args.folds,
        window=model_windows(args),
        optim=OptimConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer,
                          learning_rate=args.lr, weight_decay=args.weight_decay,
                          warmup_epochs=args.warmup_epochs, plateau_patience=args.plateau_patience,
                          plateau_factor=args.plateau_factor, early_stopping_patience=args.patience,
                          seed=args.seed, mixed_precision=not args.no_mixed_precision),
        loss=LossConfig(expr_loss=args.expr_loss, schedule=args.schedule, lambda_expr=args.lambda_expr,
                        lambda_au=args.lambda_au),
        filter_labels=args.filter_labels, pseudo_labels=args.pseudo_labels, device=args.device)
    run_dir = Experiment(config, Path(args.runs_dir) / name, progress=not args.quiet).run()
    print(run_dir)
    return 0


def list_models() -> int:
    counts = reference_parameter_counts()
    dims = ", ".join(f"{m} {d}" for m, d in REFERENCE_MODALITY_DIMS.items())
    print(f"{'model':<22}{'parameters':>12}  {'windows':<24}description")
    for name, spec in MODELS.items():
        default = " (default)" if name == DEFAULT_MODEL else ""
        w = spec.windows
        windows = f"{w.sampling} {w.length_frames}/{w.hop_frames}" + (
            f" x{w.random_windows_per_video}" if w.sampling == "random" else "")
        print(f"{name:<22}{counts[name]:>12,}  {windows:<24}{spec.description}{default}")
    print(f"(parameters for inputs {dims} and tasks va, expr, au; windows: sampling length/hop in frames)")
    return 0


def run_predict(argv: list[str]) -> int:
    p = ArgumentParser(prog="python -m train predict",
                       description="Write one CSV of per-frame predictions per video of a store.")
    p.add_argument("run", type=Path, help="run directory (runs/<name>)")
    p.add_argument("store", help="feature store (path or URL)")
    p.add_argument("--out", type=Path, required=True, help="output folder: <video_id>.csv per video")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, help="windows per forward pass (default: the run's training batch size)")
    p.add_argument("--allow-other-recipes", action="store_true",
                   help="predict even where the store's features were extracted with other settings or weights than "
                        "the model was trained on")
    args = p.parse_args(argv)
    written = predict_store(args.run, args.store, args.out, pick_device(args.device),
                            allow_other_recipes=args.allow_other_recipes, batch_size=args.batch_size)
    print(f"wrote {len(written)} prediction files to {args.out}", file=sys.stderr)
    print(args.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m train``: its exit status; errors and misuse print one line ``train: <cause>`` (``train predict:``
    for predict) and exit with status 2."""
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if argv[:1] == ["models"]:
        return list_models()
    if argv[:1] == ["predict"]:
        return run_command("train predict", run_predict, argv[1:])
    return run_command("train", run_training, argv)


if __name__ == "__main__":
    sys.exit(main())

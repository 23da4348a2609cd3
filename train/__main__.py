"""``python -m train``: train over a store (``make train``), list the models, or predict with a run.

    python -m train --store S --labels L [--features a,b] [--tasks va,expr] [--model NAME] [--folds N] [--name RUN]
    python -m train --recipe abaw3 --store S --labels L [any option replacing one of the recipe's values]
    python -m train models
    python -m train recipes [--json]
    python -m train predict RUN STORE --out DIR

Training prints progress on stderr; the last line on stdout is the run directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from datetime import datetime
from pathlib import Path

from eval.tasks import PROTOCOLS
from features_store.cli import ArgumentParser, parse_assignment, run_command
from features_store.errors import UsageError
from features_store.common import pick_device
from train.experiment import Experiment, ExperimentConfig
from train.loop import OptimConfig
from train.losses import LossConfig
from train.models import DEFAULT_MODEL, MODELS, reference_parameter_counts
from train.models import REFERENCE_MODALITY_DIMS, TRUNK_INPUTS_NOTE
from train.predict import predict_store
from train.recipes import RECIPES, LabelRules, Recipe, recipe
from train.tricks import TricksConfig


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _pairs(items: list[str], what: str, example: str, as_json: bool = True) -> dict[str, object]:
    """``KEY=VALUE`` items (see :func:`features_store.cli.parse_assignment`)."""
    return dict(parse_assignment(item, what, example, as_json) for item in items)


SETTINGS = (
    # (option, config.json section, field, argparse keywords): every one defaults to "not given" (None), so that a
    # recipe's value stays unless the user sets it, and config.json can record what was set
    ("--window", "window", "length_frames", {"type": int, "help": "window length, frames (default: the recipe's or "
                                             "the model's paper's, see `python -m train models`)"}),
    ("--hop", "window", "hop_frames", {"type": int, "help": "window hop, frames (also the prediction hop)"}),
    ("--sampling", "window", "sampling", {"choices": ("sliding", "random"),
                                          "help": "sliding windows, or random ones each epoch (M3T)"}),
    ("--windows-per-video", "window", "random_windows_per_video",
     {"type": int, "help": "random sampling: windows per video per epoch"}),
    ("--epochs", "optim", "epochs", {"type": int}),
    ("--batch-size", "optim", "batch_size", {"type": int, "help": "windows per forward pass"}),
    ("--accumulate-batches", "optim", "accumulate_batches",
     {"type": int, "help": "batches per optimiser step (effective batch = batch size x this; TSAV: 10)"}),
    ("--optimizer", "optim", "optimizer", {"choices": ("adam", "adamw", "sgd", "rmsprop")}),
    ("--lr", "optim", "learning_rate", {"type": float, "help": "learning rate (cyclical: the cycle's top)"}),
    ("--momentum", "optim", "momentum", {"type": float, "help": "SGD / RMSprop momentum"}),
    ("--weight-decay", "optim", "weight_decay", {"type": float}),
    ("--warmup-epochs", "optim", "warmup_epochs", {"type": int}),
    ("--lr-schedule", "optim", "lr_schedule", {"choices": ("plateau", "cyclical"),
                                               "help": "ReduceLROnPlateau on the validation objective, or a "
                                                       "triangular cyclical learning rate (M3T)"}),
    ("--plateau-patience", "optim", "plateau_patience",
     {"type": int, "help": "epochs without improvement before the learning rate is cut"}),
    ("--plateau-factor", "optim", "plateau_factor", {"type": float}),
    ("--cyclical-base-lr", "optim", "cyclical_base_lr", {"type": float}),
    ("--cyclical-step-up-epochs", "optim", "cyclical_step_up_epochs", {"type": float}),
    ("--min-lr", "optim", "min_learning_rate", {"type": float, "help": "training ends when the plateau schedule "
                                                                       "takes the learning rate below this"}),
    ("--patience", "optim", "early_stopping_patience",
     {"type": int, "help": "epochs without improvement before training stops"}),
    ("--reload-best-each-epoch", "optim", "reload_best_each_epoch",
     {"action": "store_const", "const": True, "help": "start each epoch from the best state so far (ABAW3)"}),
    ("--no-mixed-precision", "optim", "mixed_precision",
     {"action": "store_const", "const": False, "help": "CUDA: train in float32"}),
    ("--seed", "optim", "seed", {"type": int}),
    ("--data-workers", "optim", "data_workers",
     {"type": int, "help": "processes assembling training batches, each opening the store itself (default 0: one "
                           "batch ahead on a thread)"}),
    ("--va-loss", "loss", "va_loss", {"choices": ("ccc", "mse")}),
    ("--expr-loss", "loss", "expr_loss", {"choices": ("ce", "focal")}),
    ("--lambda-expr", "loss", "lambda_expr",
     {"type": float, "help": "weight of the EXPR loss: L = 0.5 (L_V + L_A) + lambda_expr L_EXPR + lambda_au L_AU"}),
    ("--lambda-au", "loss", "lambda_au", {"type": float}),
    ("--no-au-positive-weights", "loss", "au_positive_weights",
     {"action": "store_const", "const": False, "help": "plain BCE for AUs (default: positives weighted by each AU's "
                                                       "negative-to-positive ratio, seed 001)"}),
    ("--schedule", "loss", "schedule", {"choices": ("joint", "epoch", "batch"), "help": "multi-task updates: all "
                                        "tasks each step, or alternating per epoch / per batch"}),
    ("--filter-labels", "labels", "filter_labels",
     {"action": "store_const", "const": True, "help": "TSAV: drop inconsistent VA/EXPR frames"}),
    ("--pseudo-labels", "labels", "pseudo_labels",
     {"nargs": "?", "const": "v", "choices": ("v", "va"), "help": "TSAV: VA pseudo-labels for EXPR-only training "
                                                                 "frames, drawn each epoch: valence (v, the default) "
                                                                 "or valence and arousal (va)"}),
    ("--strict-labels", "labels", "strict_labels",
     {"action": "store_const", "const": True, "help": "abort on a label outside its task's coding (default: mask "
                                                      "and count it)"}),
    ("--protocol", "labels", "protocol", {"choices": PROTOCOLS, "help": "scoring protocol (default: the labels' "
                                                                        "layout's; CSV: abaw2022)"}),
    ("--no-cross-task-rule", "labels", "cross_task_rule",
     {"action": "store_const", "const": False, "help": "let a video that validates one task train another in the "
                                                       "same fold (seed 001 forbids it; so do we by default)"}),
    ("--smoothing", "tricks", "smoothing",
     {"action": "store_const", "const": True, "help": "smooth per-frame outputs over a window chosen per task on "
                                                      "the validation videos (HSEmotion, ABAW7)"}),
    ("--au-thresholds", "tricks", "au_thresholds",
     {"action": "store_const", "const": True, "help": "choose each AU's decision threshold on the validation videos"}),
    ("--logit-adjustment", "tricks", "logit_adjustment_tau",
     {"type": float, "metavar": "TAU", "help": "EXPR loss on logits + TAU log(class prior) against class "
                                               "imbalance (Menon et al. 2021: 1; default 0, off)"}),
    ("--modality-dropout", "tricks", "modality_dropout",
     {"type": float, "metavar": "P", "help": "zero each input modality of a training window with probability P "
                                             "(at least one kept; default 0, off)"}),
)
PSEUDO_COMPONENTS = {"v": ("valence",), "va": ("valence", "arousal")}


def train_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m train", description="Train a sequence model on a feature store.")
    p.add_argument("--store", required=True, help="feature store (path or URL)")
    p.add_argument("--labels", required=True, help="folder of Aff-Wild2 challenge folders, or a generic CSV")
    p.add_argument("--features", type=_csv, default=(), help="comma-separated features (default: every per-frame one)")
    p.add_argument("--tasks", type=_csv, default=None, help="restrict to these of va,expr,au")
    p.add_argument("--label-column", action="append", default=[], metavar="TASKCOL=CSVCOL",
                   help="generic CSV: which column holds a task column, e.g. expr=intended_emotion")
    p.add_argument("--recipe", choices=list(RECIPES), help="a paper's whole training recipe (`python -m train "
                   "recipes` lists them); any option below replaces one of its values")
    p.add_argument("--model", choices=list(MODELS), help=f"the model (default: the recipe's, else {DEFAULT_MODEL})")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="model config override")
    p.add_argument("--route", action="append", default=[], metavar="BRANCH=FEATURE",
                   help="m3t_3dvgg: which 2D static feature joins which branch's 3D features, e.g. valence=fer "
                        "(repeatable; default: every vector feature to both branches)")
    p.add_argument("--init-from", metavar="RUN", help="start from a previous run's weights wherever names and "
                   "shapes match (a trunk run's into a fusion model)")
    p.add_argument("--freeze", type=_csv, default=(), metavar="MODULE,...",
                   help="keep these modules as they are (e.g. visual,aural; see the model's state dict names)")
    p.add_argument("--folds", type=int, help="1: the official split; 6: ABAW3's 6-fold CV (default: the recipe's)")
    p.add_argument("--name", default=None, help="run name (default: model, features and time)")
    p.add_argument("--runs-dir", default="runs")
    for option, section, field_name, keywords in SETTINGS:
        p.add_argument(option, dest=f"{section}.{field_name}", default=None, **keywords)
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def experiment_config(args: argparse.Namespace) -> ExperimentConfig:
    """The run's config: the recipe's sections (or the defaults), then every option given (recorded as overrides)."""
    chosen = recipe(args.recipe) if args.recipe else None
    model = args.model or (chosen.model if chosen else DEFAULT_MODEL)
    given = {dest: value for dest in (f"{section}.{name}" for _, section, name, _ in SETTINGS)
             if (value := getattr(args, dest)) is not None}
    if "labels.pseudo_labels" in given:
        given["labels.pseudo_labels"] = PSEUDO_COMPONENTS[given["labels.pseudo_labels"]]
    base = chosen or Recipe("defaults", "affectsync's defaults", model)
    sections = {name: base.section(name, default) for name, default in (
        ("window", MODELS[model].windows), ("optim", OptimConfig()), ("loss", LossConfig()), ("labels", LabelRules()),
        ("tricks", TricksConfig()))}
    for dest, value in given.items():
        section, name = dest.split(".")
        try:
            sections[section] = dataclasses.replace(sections[section], **{name: value})
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    labels = sections["labels"]
    overrides = {**given, **({"model": args.model} if args.model else {}),
                 **({"folds": args.folds} if args.folds is not None else {}),
                 **({"tasks": list(args.tasks)} if args.tasks else {})}
    return ExperimentConfig(
        store=args.store, labels=args.labels, features=args.features,
        tasks=args.tasks,
        label_columns=_pairs(args.label_column, "TASKCOL=CSVCOL", "expr=intended_emotion", as_json=False),
        model=model, model_overrides=_pairs(args.set, "FIELD=VALUE", "gru_hidden=128") | (
            {"route": tuple(args.route)} if args.route else {}),
        folds=args.folds if args.folds is not None else (chosen.folds[0] if chosen else 1),
        window=sections["window"], optim=sections["optim"], loss=sections["loss"], tricks=sections["tricks"],
        filter_labels=labels.filter_labels, pseudo_labels=labels.pseudo_labels, strict_labels=labels.strict_labels,
        protocol=labels.protocol, cross_task_rule=labels.cross_task_rule, recipe=args.recipe,
        overrides={key: list(value) if isinstance(value, tuple) else value for key, value in overrides.items()},
        device=args.device, init_from=args.init_from, freeze=args.freeze)


def run_training(argv: list[str]) -> int:
    args = train_parser().parse_args(argv)
    config = experiment_config(args)
    features = "+".join(args.features) if args.features else "all"
    name = args.name or f"{args.recipe or config.model}_{features}_{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    run_dir = Experiment(config, Path(args.runs_dir) / name, progress=not args.quiet).run()
    print(run_dir)
    return 0


def list_recipes(argv: list[str]) -> int:
    """``python -m train recipes [--json]``: every recipe's values and where each comes from."""
    p = ArgumentParser(prog="python -m train recipes", description="The papers' training recipes (RECIPE=name).")
    p.add_argument("--json", action="store_true", help="{recipe: {model, window, optim, loss, labels, tricks, "
                                                       "folds, tasks, sources}} as JSON")
    args = p.parse_args(argv)
    listing = {name: entry.listing() for name, entry in RECIPES.items()}
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    for name, entry in listing.items():
        print(f"{name}: {entry['paper']}; model {entry['model']}, {entry['folds']} fold(s), tasks "
              f"{','.join(entry['tasks'] or ['all'])}")
        for section in ("window", "optim", "loss", "labels", "tricks"):
            for key, value in entry[section].items():
                dotted = f"{section}.{key}"
                print(f"  {dotted:<34} {str(value):<18} {entry['sources'][dotted]}")
    return 0


def list_models() -> int:
    logging.getLogger("affectsync.train").setLevel(logging.WARNING)  # building each model is not training it
    counts = reference_parameter_counts()
    dims = ", ".join(f"{m} {d}" for m, d in REFERENCE_MODALITY_DIMS.items())
    print(f"{'model':<22}{'parameters':>12}  {'windows':<24}description")
    for name, spec in MODELS.items():
        default = " (default)" if name == DEFAULT_MODEL else ""
        w = spec.windows
        windows = f"{w.sampling} {w.length_frames}/{w.hop_frames}" + (
            f" x{w.random_windows_per_video}" if w.sampling == "random" else "")
        print(f"{name:<22}{counts[name]:>12,}  {windows:<24}{spec.description}{default}")
    print(f"(parameters for inputs {dims} and tasks va, expr, au, {TRUNK_INPUTS_NOTE}; windows: sampling "
          "length/hop in frames)")
    return 0


def run_predict(argv: list[str]) -> int:
    p = ArgumentParser(prog="python -m train predict",
                       description="Write one CSV of per-frame predictions per video of a store.")
    p.add_argument("run", type=Path, help="run directory (runs/<name>)")
    p.add_argument("store", help="feature store (path or URL)")
    p.add_argument("--out", type=Path, required=True, help="output folder: <video_id>.csv per video")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, help="windows per forward pass (default: the run's training batch size)")
    p.add_argument("--no-post-processing", action="store_true",
                   help="write the decisions of the raw outputs, without the smoothing and AU thresholds the run "
                        "chose on validation")
    p.add_argument("--allow-other-recipes", action="store_true",
                   help="predict even where the store's features were extracted with other settings or weights than "
                        "the model was trained on")
    args = p.parse_args(argv)
    written = predict_store(args.run, args.store, args.out, pick_device(args.device),
                            allow_other_recipes=args.allow_other_recipes, batch_size=args.batch_size,
                            post_processing=not args.no_post_processing)
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
    if argv[:1] == ["recipes"]:
        return run_command("train recipes", list_recipes, argv[1:])
    if argv[:1] == ["predict"]:
        return run_command("train predict", run_predict, argv[1:])
    return run_command("train", run_training, argv)


if __name__ == "__main__":
    sys.exit(main())

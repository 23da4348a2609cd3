"""CLI: ``python -m extract VIDEO_OR_DIR... --store STORE [--features a,b,c] [--overwrite] [--models DIR]``, and
``python -m extract models [--models DIR] [--json]`` to list the weights every feature needs,
``python -m extract models fetch FEATURE... [--offline] [--accept-license NAME]`` to download, verify and pin them
(``make weights FEATURES=...``), ``models pack OUT.tar`` / ``models unpack IN.tar`` to carry them to a machine
without internet."""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

from extract import registry
from extract.weights import MODELS_ENV, models_search_path
from features_store.cli import ArgumentParser, run_command

MODELS_HELP = f"folder searched first for weights you bring (then ${MODELS_ENV}, then models/)"


def models_main(argv: list[str]) -> int:
    """``python -m extract models [fetch|pack|unpack]``: list every feature's weights (found or missing, with path,
    sha256, source, license), fetch them, or carry a models folder."""
    commands = {"fetch": _fetch, "pack": partial(_carry, "pack"), "unpack": partial(_carry, "unpack")}
    if argv[:1] and argv[0] in commands:
        return run_command(f"extract models {argv[0]}", commands[argv[0]], argv[1:])
    return run_command("extract models", _list_models, argv)


def _list_models(argv: list[str]) -> int:
    from extract.catalogue import format_table, weights_table

    parser = ArgumentParser(prog="python -m extract models",
                            description="List the weights files every feature needs and whether they are here. "
                                        "Subcommands: fetch FEATURE..., pack OUT.tar, unpack IN.tar.")
    parser.add_argument("--models", metavar="DIR", help=MODELS_HELP)
    parser.add_argument("--json", action="store_true", help="JSON lines, one per weights file")
    args = parser.parse_args(argv)
    rows = weights_table(args.models)
    if args.json:
        print("\n".join(json.dumps(row) for row in rows))
    else:
        print(format_table(rows, models_search_path(args.models)))
    return 0


def _fetch(argv: list[str]) -> int:
    from extract.fetching import fetch_features, fetch_hub_folder

    parser = ArgumentParser(prog="python -m extract models fetch",
                            description="Download, verify and pin the weights the features need, into the models "
                                        "folder (nothing is downloaded at extraction time).")
    parser.add_argument("features", nargs="+", metavar="FEATURE",
                        help="feature names (comma-separated or not), or hf:<owner>/<repo>@<commit> for a Hugging "
                             "Face model folder")
    parser.add_argument("--models", metavar="DIR", help="the models folder to fill (default: $" + MODELS_ENV +
                        ", else models/)")
    parser.add_argument("--offline", action="store_true", help="never touch the network: only check what is there")
    parser.add_argument("--accept-license", action="append", default=[], metavar="NAME",
                        help="accept a non-commercial license by the name the refusal quotes; repeatable")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_setting_arguments(parser)
    args = parser.parse_args(argv)
    names = [name.strip() for item in args.features for name in item.split(",") if name.strip()]
    hub = [name for name in names if name.startswith("hf:")]
    done = [fetch_hub_folder(spec, args.models) for spec in hub]
    done += fetch_features([n for n in names if n not in hub], args.models, _settings(args), args.offline,
                           args.accept_license, progress=not args.no_progress)
    for row in done:
        print(f"{row.outcome:<8} {row.feature:<12} {row.path}  {row.sha256}")
    return 0


CARRY = {"pack": ("OUT.tar", "Write a tar of the models folder, every file verified against SHA256SUMS."),
         "unpack": ("IN.tar", "Unpack a models tar after checking every file against its SHA256SUMS.")}


def _carry(command: str, argv: list[str]) -> int:
    """``models pack OUT.tar`` / ``models unpack IN.tar`` (:mod:`extract.packing`)."""
    from extract import packing

    metavar, description = CARRY[command]
    parser = ArgumentParser(prog=f"python -m extract models {command}", description=description)
    parser.add_argument("archive", type=Path, metavar=metavar)
    parser.add_argument("--models", metavar="DIR", help=MODELS_HELP)
    args = parser.parse_args(argv)
    names = getattr(packing, command)(args.archive, args.models)
    print(f"{args.archive}: {len(names)} files verified, {command}ed ({models_search_path(args.models)[0]})")
    return 0


def _add_setting_arguments(parser: argparse.ArgumentParser) -> None:
    """``--set`` and the shorthands for the speech models: what chooses a feature's weights."""
    parser.add_argument("--set", action="append", default=[], metavar="FEATURE.FIELD=VALUE",
                        help="set one config field of a feature, e.g. face_crop.crop_size_px=128 (M3T's crops) or "
                             "iresnet.weights_file=w600k_r50.onnx; repeatable")
    parser.add_argument("--asr", choices=("whisper", "vosk"),
                        help="speech recogniser of `words` (default whisper: Whisper tiny.en, shipped)")
    parser.add_argument("--asr-model", metavar="PATH",
                        help="ASR model folder, a path or a folder name in the models folder: a CTranslate2 Whisper "
                             "(e.g. faster-whisper-small) or, with --asr vosk, a Vosk model")
    parser.add_argument("--bert-model", metavar="PATH",
                        help="transformers BERT folder for `bert`, e.g. bert-base-uncased (default: the shipped "
                             "6-layer MiniLM)")


def _settings(args: argparse.Namespace) -> dict[str, dict]:
    """Feature -> {config field: value} from ``--set`` and the speech shorthands."""
    settings: dict[str, dict] = {}
    for text in args.set:
        feature, field, value = registry.parse_setting(text)
        settings.setdefault(feature, {})[field] = value
    for feature, field, value in (("words", "asr", args.asr), ("words", "asr_model", args.asr_model),
                                  ("bert", "model", args.bert_model)):
        if value is not None:
            settings.setdefault(feature, {})[field] = value
    return settings


def main(argv: list[str] | None = None) -> int:
    """``python -m extract``: its exit status; errors and misuse print one line ``extract: <cause>`` (status 2)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["models"]:
        return models_main(argv[1:])
    return run_command("extract", _extract, argv)


def _extract(argv: list[str]) -> int:
    from extract.run import run_extraction

    offline = registry.feature_names(offline_only=True)
    parser = ArgumentParser(
        prog="python -m extract",
        description="Extract frame-synchronized features from videos into a Zarr feature store. "
                    "`python -m extract models` lists the weights each feature needs.")
    parser.add_argument("inputs", nargs="*", metavar="VIDEO_OR_DIR",
                        help="video files, or directories searched recursively for videos")
    parser.add_argument("--store", help="store path or fsspec URL, e.g. stores/sample.zarr")
    parser.add_argument("--features", default=",".join(offline),
                        help=f"comma-separated feature names (default: every offline one: {','.join(offline)}); "
                             f"onnx:<name> runs the ONNX face model configured by <name>.json in the models folder")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace features extracted with other parameters, or groups from another source file")
    parser.add_argument("--subject", choices=("largest", "left", "right"), default="largest",
                        help="whose face: the largest (groups <video>), or the left/right person of two-person videos "
                             "(groups <video>_left / <video>_right)")
    parser.add_argument("--models", metavar="DIR", help=MODELS_HELP)
    _add_setting_arguments(parser)
    parser.add_argument("--workers", type=int, metavar="N",
                        help="extract on a local dask cluster of N worker processes (one task per video)")
    parser.add_argument("--scheduler", metavar="URL",
                        help="extract on a running dask cluster, e.g. tcp://10.0.0.5:8786 (workers need affectsync)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--list-features", action="store_true", help="print the known feature names and exit")
    args = parser.parse_args(argv)
    if args.list_features:
        print("\n".join(registry.feature_names() + [f"{prefix}:<name>" for prefix in registry.family_prefixes()]))
        return 0
    if not args.inputs or not args.store:
        parser.error("give at least one VIDEO_OR_DIR and --store")
    features = [name.strip() for name in args.features.split(",") if name.strip()]
    report = run_extraction(args.inputs, args.store, features, overwrite=args.overwrite,
                            progress=not args.no_progress, subject=args.subject, models_dir=args.models,
                            settings=_settings(args), workers=args.workers, scheduler=args.scheduler)
    print(f"{args.store}: {len(report.extracted)} extracted, {len(report.skipped)} already complete, "
          f"{len(report.failed)} failed", file=sys.stderr)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())

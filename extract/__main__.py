"""CLI: ``python -m extract VIDEO_OR_DIR... --store STORE [--features a,b,c] [--overwrite]``."""

from __future__ import annotations

import argparse
import sys

from extract import registry
from extract.run import VideoIdCollision, run_extraction


def main(argv: list[str] | None = None) -> int:
    offline = registry.feature_names(offline_only=True)
    parser = argparse.ArgumentParser(
        prog="python -m extract",
        description="Extract frame-synchronized features from videos into a Zarr feature store.")
    parser.add_argument("inputs", nargs="*", metavar="VIDEO_OR_DIR",
                        help="video files, or directories searched recursively for videos")
    parser.add_argument("--store", help="store path or fsspec URL, e.g. stores/sample.zarr")
    parser.add_argument("--features", default=",".join(offline),
                        help=f"comma-separated feature names (default: every offline one: {','.join(offline)})")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace features extracted with other parameters, or groups from another source file")
    parser.add_argument("--subject", choices=("largest", "left", "right"), default="largest",
                        help="whose face: the largest (groups <video>), or the left/right person of two-person videos "
                             "(groups <video>_left / <video>_right)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--list-features", action="store_true", help="print the known feature names and exit")
    args = parser.parse_args(argv)
    if args.list_features:
        print("\n".join(registry.feature_names()))
        return 0
    if not args.inputs or not args.store:
        parser.error("give at least one VIDEO_OR_DIR and --store")
    features = [name.strip() for name in args.features.split(",") if name.strip()]
    try:
        report = run_extraction(args.inputs, args.store, features, overwrite=args.overwrite,
                                progress=not args.no_progress, subject=args.subject)
    except (VideoIdCollision, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.store}: {len(report.extracted)} extracted, {len(report.skipped)} already complete, "
          f"{len(report.failed)} failed", file=sys.stderr)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())

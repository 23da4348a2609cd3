"""CLI: ``python -m features_store {info,verify,ls,show} STORE``, ``merge A B --into C``, ``diff A B``,
``export-h5 STORE OUT.h5``, ``import-h5 IN.h5 STORE``, ``import-npy DIR STORE``, ``export-table STORE OUT.parquet``,
``import-openface CSV... STORE``, ``import-pyfeat CSV... STORE``, ``view STORE`` (a page in the browser); needs only
zarr and numpy (``show``: matplotlib; HDF5: h5py; ``export-table``: pyarrow; ``view``: Pillow, and PyAV for source
frames), never the extractors."""

from __future__ import annotations

import json
import sys

from features_store import viewer
from features_store.cli import ArgumentParser, run_command
from features_store.describe import describe_store
from features_store.store import FeatureStore
from features_store.tables import DEFAULT_ROWS_PER_GROUP
from features_store.verify import verify_store


def _info(store: FeatureStore, as_json: bool) -> int:
    description = describe_store(store)
    if as_json:
        print(json.dumps(description, indent=2))
        return 0
    print(f"{store.location}: {description['n_videos']} videos, {description['n_complete']} complete, "
          f"{len(description['failures'])} failed")
    for failure in description["failures"]:
        print(f"  FAILED {failure['video_id']} ({failure['source']}): {failure['reason']}")
    for claim in description["claims"]:
        state = "stale, left by a run that died" if claim["stale"] else "being written"
        print(f"  CLAIMED {claim['name']} by {claim['host']} pid {claim['pid']} since {claim['claimed_utc']} ({state})")
    for video_id, video in description["videos"].items():
        state = "complete" if video["complete"] else "PARTIAL"
        print(f"\n{video_id}  [{state}]  T={video['T']}  {video['duration_s']:.2f} s  "
              f"{video['width']}x{video['height']}  {video['fps']:.3f} fps  source {video['source']['name']}")
        if video["audio_reason"]:
            print(f"  audio: {video['audio_reason']}")
        if video["n_words"] is not None:
            print(f"  words: {video['n_words']} (group attribute 'words')")
        for name, array in video["arrays"].items():
            if "error" in array:
                print(f"  {name:<16} {array['error']}")
                continue
            shape = "x".join(map(str, array["shape"]))
            print(f"  {name:<16} {shape:<14} {array['dtype']:<8} {array['extractor'] or ''}")
    return 0


def _verify(store: FeatureStore) -> int:
    report = verify_store(store)
    for video_id, problems in report.items():
        for problem in problems:
            print(f"{store.location}/videos/{video_id}: {problem}")
    n_videos = len(store.video_ids())
    print(f"{store.location}: {n_videos - len(report)} of {n_videos} videos consistent", file=sys.stderr)
    return 1 if report else 0


def _ls(store: FeatureStore) -> int:
    for video_id, metadata in store.videos_metadata().items():
        attrs = metadata["attributes"]
        state = "complete" if attrs.get("complete") is True else "partial"
        print(f"{video_id}\t{attrs.get('n_frames')}\t{state}\t{','.join(metadata['arrays'])}")
    return 0


def _show(store: FeatureStore, video_id: str, out: str) -> int:
    from pathlib import Path

    from features_store.show import contact_sheet

    print(contact_sheet(store.video(video_id), Path(out)))
    return 0


def _sharing(args) -> int:
    """merge, diff, export-h5, import-h5, import-npy (features_store.interop)."""
    from features_store import interop

    if args.command == "merge":
        plan = interop.merge(args.stores, args.into)
        print(f"{args.into}: {len(plan.new_videos)} videos and {len(plan.new_arrays)} arrays added")
        return 0
    if args.command == "diff":
        report = interop.diff(FeatureStore(args.a, mode="r"), FeatureStore(args.b, mode="r"))
        print(json.dumps(report, indent=2))
        return 0 if report["identical"] else 1
    if args.command == "export-h5":
        interop.export_h5(FeatureStore(args.store, mode="r"), args.out)
        print(f"{args.out}: written")
        return 0
    imported = (interop.import_h5(args.h5, args.store) if args.command == "import-h5"
                else interop.import_npy(args.folder, args.store, fps=args.fps))
    print(f"{args.store}: {len(imported)} videos imported")
    return 0


SHARING = ("merge", "diff", "export-h5", "import-h5", "import-npy")


def _tables(args) -> int:
    """export-table (features_store.tables), import-openface and import-pyfeat (features_store.importers)."""
    if args.command == "export-table":
        from features_store.tables import export_table

        plan, n_groups = export_table(FeatureStore(args.store, mode="r"), args.out, features=_names(args.features),
                                      video_ids=_names(args.videos), rows_per_group=args.rows_per_group)
        n_videos = len(plan.video_ids)
        print(f"{args.out}: {plan.n_rows} rows ({n_videos} video{'s' * (n_videos != 1)}) x {len(plan.columns)} columns "
              f"({', '.join(plan.features)}), {n_groups} row groups")
        return 0
    from features_store import importers

    reports = importers.import_csvs(importers.LAYOUTS[args.command.removeprefix("import-")], args.csvs, args.store,
                                    video_id=args.video, overwrite=args.overwrite, tool_version=args.tool_version)
    for report in reports:
        print(report.summary())
    return 0


def _names(text: str | None) -> list[str] | None:
    """``a,b`` -> ["a", "b"]; None (not given) stays None."""
    return None if text is None else [name.strip() for name in text.split(",") if name.strip()]


TABLES = ("export-table", "import-openface", "import-pyfeat")


def main(argv: list[str] | None = None) -> int:
    """``python -m features_store``: its exit status; errors and misuse print ``features_store: <cause>`` (status 2)."""
    return run_command("features_store", _main, argv)


def _main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="python -m features_store", description="Inspect, check and share feature "
                                     "stores (paths or fsspec URLs).")
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="videos, T, duration, features with shape/dtype/provenance")
    info.add_argument("store")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    verify = commands.add_parser("verify", help="check every video group; non-zero exit on any inconsistency")
    verify.add_argument("store")
    commands.add_parser("ls", help="one line per video: id, T, state, arrays").add_argument("store")
    show = commands.add_parser("show", help="contact sheet of a video's faces over time (PNG)")
    show.add_argument("store")
    show.add_argument("video")
    show.add_argument("--out", required=True, help="PNG file to write")
    merge = commands.add_parser("merge", help="union of the videos and features of stores; refuses a feature whose "
                                "provenance differs, naming both sides, and then writes nothing")
    merge.add_argument("stores", nargs="+")
    merge.add_argument("--into", required=True, help="the store to merge into (created when missing)")
    diff = commands.add_parser("diff", help="features that differ in provenance or content (JSON; exit 1 if any)")
    diff.add_argument("a")
    diff.add_argument("b")
    export = commands.add_parser("export-h5", help="the store as one HDF5 file, same layout and attributes")
    export.add_argument("store")
    export.add_argument("out")
    import_h5 = commands.add_parser("import-h5", help="the videos of an export-h5 file into a store")
    import_h5.add_argument("h5")
    import_h5.add_argument("store")
    import_npy = commands.add_parser("import-npy", help="<dir>/<video_id>/<feature>.npy folders (+ frame_time.npy) "
                                     "into a store")
    import_npy.add_argument("folder")
    import_npy.add_argument("store")
    import_npy.add_argument("--fps", type=float, help="frame rate for i / fps frame times where no frame_time.npy")
    table = commands.add_parser("export-table", help="one row per frame to a Parquet file: video_id, frame, time_s, "
                                "the validity columns, then <feature>_<column> per feature (needs pyarrow)")
    table.add_argument("store")
    table.add_argument("out", help="the .parquet file to write")
    table.add_argument("--features", help="comma-separated per-frame arrays (default: every per-frame feature array "
                       "the videos share, except images: face_crop and face_mask are left out, and refused if named)")
    table.add_argument("--videos", help="comma-separated video ids (default: every complete video)")
    table.add_argument("--rows-per-group", type=int, default=DEFAULT_ROWS_PER_GROUP,
                       help=f"frames per Parquet row group, also the block read at a time (default "
                       f"{DEFAULT_ROWS_PER_GROUP})")
    for tool, command in (("OpenFace 2.x", "import-openface"), ("py-feat", "import-pyfeat")):
        feature = command.removeprefix("import-")
        importer = commands.add_parser(command, help=f"{tool} CSVs as feature {feature!r} (+ {feature}_valid) of "
                                       "videos already in the store, rows placed on the frames by "
                                       + ("timestamp" if feature == "openface" else "frame index"))
        importer.add_argument("csvs", nargs="+", metavar="CSV", help="named <video_id>.csv, or one CSV with --video")
        importer.add_argument("store")
        importer.add_argument("--video", help="the video of the (one) CSV, instead of its file name")
        importer.add_argument("--overwrite", action="store_true", help=f"replace an existing {feature!r} feature")
        importer.add_argument("--tool-version", help=f"the {tool} version that wrote the CSVs (recorded in the "
                              "provenance; the CSVs do not say)")
    view = commands.add_parser("view", help="look at a store in the browser: frames, face, words, audio and "
                               "features on one timeline (127.0.0.1 only; --out DIR: static files to share)")
    viewer.add_arguments(view)
    args = parser.parse_args(argv)
    if args.command == "view":
        return viewer.run(args)
    if args.command in SHARING:
        return _sharing(args)
    if args.command in TABLES:
        return _tables(args)
    store = FeatureStore(args.store, mode="r")
    if args.command == "info":
        return _info(store, args.json)
    if args.command == "show":
        return _show(store, args.video, args.out)
    return _verify(store) if args.command == "verify" else _ls(store)


if __name__ == "__main__":
    sys.exit(main())

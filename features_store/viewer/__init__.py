"""``python -m features_store view STORE``: look at a store in a browser, one video at a time, frame by frame.

The page lists the videos (complete, T, duration, features, the store's failures) and shows, for one video, the frame
at the playhead (decoded from the source video when ``--media`` holds it, else the face crop) with the face box and
68 landmarks drawn on it, and timelines on the ``frame_time`` clock: words as labelled spans, ``face_valid``, the mel
spectrogram, the ``fer`` probabilities, any feature as a heat strip, and with ``--run`` each task's predictions over
its labels. Drag or click on the timelines to move the playhead, arrow keys step one frame (shift: ten), the mouse
wheel zooms; the address (``#video=<id>&frame=<i>``) links to the frame shown.

Data are read lazily (:mod:`features_store.viewer.data`): an hour-long video opens as fast as a short one. ``--out
DIR`` writes the page as static files instead (:mod:`features_store.viewer.export`). The server binds 127.0.0.1
only. Needs only the core install; Pillow encodes JPEG (else PNG), PyAV decodes source frames.

The command line calls :func:`add_arguments` on its ``view`` sub-parser and :func:`run` with the parsed arguments.
"""

from __future__ import annotations

import argparse
import sys

from features_store.errors import UsageError

DEFAULT_PORT = 8765


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``view`` command's arguments: ``store``, ``--run``, ``--labels``, ``--media``, ``--port``, ``--out``,
    ``--export-frames``, ``--export-bins``."""
    from features_store.viewer.export import EXPORT_BINS, EXPORT_FRAMES

    parser.add_argument("store", help="the feature store (path or fsspec URL)")
    parser.add_argument("--run", help="a run folder of python -m train: draw its predictions over its labels")
    parser.add_argument("--labels", help="labels file or folder for --run (default: the one the run's config names)")
    parser.add_argument("--media", action="append", default=[], metavar="DIR",
                        help="folder holding the source videos (searched recursively by file name and size; "
                             "repeatable); without it the page shows the face crops")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; 0: any free port)")
    parser.add_argument("--out", metavar="DIR",
                        help="write the page as static files into DIR (to share; face crops only) instead of serving")
    parser.add_argument("--export-frames", type=int, default=EXPORT_FRAMES, metavar="N",
                        help=f"with --out: face crops exported per video at most, evenly spaced (default "
                             f"{EXPORT_FRAMES})")
    parser.add_argument("--export-bins", type=int, default=EXPORT_BINS, metavar="N",
                        help=f"with --out: timeline columns per video (default {EXPORT_BINS})")


def viewer_data(args: argparse.Namespace):
    """The :class:`~features_store.viewer.data.ViewerData` the parsed ``args`` describe."""
    from features_store.store import FeatureStore
    from features_store.viewer.data import ViewerData
    from features_store.viewer.runs import RunPredictions

    if args.labels and not args.run:
        raise UsageError("--labels goes with --run (the labels of a run's predictions)")
    run = RunPredictions(args.run, args.labels) if args.run else None
    return ViewerData(FeatureStore(args.store, mode="r"), args.media, run)


def run(args: argparse.Namespace) -> int:
    """Serve the viewer until interrupted (Ctrl-C), or with ``--out`` write it as static files; the exit status."""
    data = viewer_data(args)
    if args.out:
        from features_store.viewer.export import export_static

        if args.export_frames < 1 or args.export_bins < 1:
            raise UsageError("--export-frames and --export-bins must be at least 1")
        page = export_static(data, args.out, bins=args.export_bins, max_frames=args.export_frames)
        print(page)
        return 0
    from features_store.viewer.server import start_server

    try:
        server, thread = start_server(data, args.port)
    except OSError as exc:
        raise UsageError(f"cannot listen on 127.0.0.1:{args.port} ({exc.strerror or exc}): give another --port "
                         "(0: any free port)") from exc
    print(f"affectsync viewer of {data.store.location} at {server.url} (Ctrl-C stops it)", file=sys.stderr,
          flush=True)
    try:
        thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
        data.sources.close()
    return 0

"""``view --out DIR``: the viewer as static files to share, opened from disk (``file://``) or any web server.

What the folder holds, and its limits (it is a snapshot, not the store):

- ``index.html``, ``static/app.js``, ``static/style.css`` (the same page as the server's), and ``data/*.js`` (the
  JSON the server would send, wrapped as scripts, because browsers refuse ``fetch`` from ``file://``);
- per video: the whole-video timelines in at most ``bins`` columns (exact for shorter videos, sampled beyond:
  zooming in shows the same columns larger), every offered heat feature likewise (one file each, loaded when
  chosen), and per frame its time, ``word_index`` and ``face_valid`` (a few bytes a frame);
- face crops only, never source frames (the folder can be shared without the videos), for at most ``max_frames``
  frames per video, evenly spaced; the page shows the nearest exported frame and says so. Frame details (box,
  landmarks, fer, predictions) come with the exported frames.

Sizes: about 4 kB per exported crop plus the timelines; ``--export-frames`` bounds the crops.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from features_store.errors import UsageError
from features_store.reading import read_rows
from features_store.viewer.data import ViewerData
from features_store.viewer.images import EXTENSIONS, encode_rgb
from features_store.viewer.server import static_file

STATIC_MARKER = "<!-- static-data -->"
EXPORT_BINS = 2000
EXPORT_FRAMES = 1000


def _script(key: str, payload: Any) -> str:
    """A script that hands ``payload`` to the page under ``key`` (JSONP-style: works from file://)."""
    return f"window.affectsyncStatic.put({json.dumps(key)}, {json.dumps(payload, allow_nan=False)});\n"


def export_static(data: ViewerData, out: str | Path, bins: int = EXPORT_BINS, max_frames: int = EXPORT_FRAMES
                  ) -> Path:
    """Write the static viewer of ``data``'s store into ``out`` (created, or replacing an earlier export there: a
    folder holding anything else is refused, nothing in it deleted); returns ``out/index.html``."""
    out = Path(out)
    if out.is_dir() and any(out.iterdir()) and not (out / "data" / "index.js").is_file():
        raise UsageError(f"{out}: not empty and not an earlier `view --out` export; give a new or empty folder")
    if (out / "data").is_dir():
        shutil.rmtree(out / "data")  # the earlier export's videos, all of them
    (out / "data").mkdir(parents=True)
    page = static_file("index.html").decode()
    page = page.replace(STATIC_MARKER, '<script src="data/index.js"></script>')
    (out / "index.html").write_text(page)
    (out / "static").mkdir(exist_ok=True)
    for name in ("app.js", "style.css"):
        (out / "static" / name).write_bytes(static_file(name))
    index = data.index()
    folders = {}
    for number, entry in enumerate(index["videos"]):
        video_id = entry["video_id"]
        folder = f"v{number:04d}"
        folders[video_id] = folder
        _export_video(data, video_id, out, folder, bins, max_frames)
    prelude = "window.affectsyncStatic = window.affectsyncStatic || {items: {}, put(k, v) { this.items[k] = v; }};\n"
    (out / "data" / "index.js").write_text(prelude + _script("index", {**index, "folders": folders}))
    return out / "index.html"


def _export_video(data: ViewerData, video_id: str, out: Path, folder: str, bins: int, max_frames: int) -> None:
    video_dir = out / "data" / folder
    (video_dir / "frames").mkdir(parents=True)
    meta = data.video(video_id)
    n_frames = meta["T"]
    meta["source"] = {**meta["source"], "reachable": False,
                      "reason": "a shared copy: face crops only, no source frames"}
    overview = data.range(video_id, 0, n_frames, bins, None)
    frame_time = read_rows(data.array(video_id, "frame_time"), 0, n_frames)
    per_frame = {"frame_time_s": np.round(frame_time, 6).tolist()}
    for name in ("word_index", "face_valid"):
        if data.has(video_id, name):
            per_frame[name] = read_rows(data.array(video_id, name), 0, n_frames).astype(int).tolist()
    picks = (np.arange(n_frames) if n_frames <= max_frames
             else np.unique(np.linspace(0, n_frames - 1, max_frames).round().astype(int)))
    frames = {}
    for index in picks.tolist():
        details = data.frame(video_id, index)
        crop = data.crop_rgb(video_id, index)
        if crop is not None:
            body, mime = encode_rgb(crop)
            name = f"{index}.{EXTENSIONS[mime]}"
            (video_dir / "frames" / name).write_bytes(body)
            details["crop_file"] = f"data/{folder}/frames/{name}"
        frames[str(index)] = details
    words = data.group(video_id).attrs.get("words")
    words = [{key: word.get(key) for key in ("text", "start", "end", "conf")} for word in words or []]
    payload = {"meta": meta, "overview": overview, "per_frame": per_frame, "exported_frames": picks.tolist(),
               "frames": frames, "words": words, "bins": bins}
    (video_dir / "video.js").write_text(_script(f"video:{video_id}", payload))
    for entry in meta["heat_features"]:
        heat = data.range(video_id, 0, n_frames, bins, entry["name"], series=["heat"])["heat"]
        (video_dir / f"heat_{entry['name']}.js").write_text(_script(f"heat:{video_id}:{entry['name']}", heat))

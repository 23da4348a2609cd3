"""The source videos behind a store, when they are reachable: found by name and size, one frame decoded on request.

A store records each video's source file name and size (``source_name``, ``source_size_bytes``), not where it lay
when it was extracted (stores travel between machines). :class:`SourceFinder` looks for that name under the folders
given (``view --media DIR``), recursively, and takes a file only when its size is the stored one (hashing an hour of
video to compare sha256 on every open would take seconds).

:class:`FrameDecoder` gives frame ``i`` of a video as the extractors counted it: it seeks (PyAV) to the keyframe before
the frame's time and decodes forward to the frame whose presentation time is ``frame_time[i]`` (within half a frame);
stepping forward a few frames continues the decoding without seeking. A file whose timestamps cannot be matched is
decoded from its start, counting frames, as ingest did. PyAV is imported only here, when a source is reachable.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from features_store.errors import AffectsyncError

FORWARD_DECODE_FRAMES = 48
"""A request up to this many frames after the last decoded one decodes on instead of seeking."""
SEEK_BACK_S = (0.0, 1.0, 5.0, 30.0)
"""Where a seek starts before the wanted time, tried in turn when a seek lands after the frame (keyframe spacing)."""


OPEN_DECODERS = 4
"""Source files kept open at once (the videos looked at last)."""


class SourceError(AffectsyncError, OSError):
    """A source file that cannot give the frame asked for."""


@dataclass(frozen=True)
class FoundSource:
    """A source file (None when not reachable) and why not."""

    path: Path | None
    reason: str | None = None


class SourceFinder:
    """Source files by name under ``media_dirs`` (searched recursively, once per folder, on first use)."""

    def __init__(self, media_dirs=()):
        self.media_dirs = [Path(d) for d in media_dirs]
        self._names: dict[str, list[Path]] | None = None
        self._decoders: dict[Path, FrameDecoder] = {}
        self._lock = threading.Lock()

    def _index(self) -> dict[str, list[Path]]:
        with self._lock:
            if self._names is None:
                names: dict[str, list[Path]] = {}
                for folder in self.media_dirs:
                    for root, _, files in os.walk(folder):
                        for name in files:
                            names.setdefault(name, []).append(Path(root) / name)
                self._names = names
            return self._names

    def find(self, name: str | None, size_bytes: int | None) -> FoundSource:
        """The file called ``name`` of ``size_bytes`` under the media folders, or why there is none."""
        if not self.media_dirs:
            return FoundSource(None, "no media folder given (view --media DIR): showing the face crops")
        if not name:
            return FoundSource(None, "the store records no source file name")
        candidates = self._index().get(name, [])
        for path in candidates:
            try:
                if size_bytes is None or path.stat().st_size == int(size_bytes):
                    return FoundSource(path)
            except OSError:
                continue  # moved or deleted since the folders were listed
        if candidates:
            return FoundSource(None, f"{candidates[0]} has another size than the store's source "
                                     f"({size_bytes} bytes): not the same file")
        folders = ", ".join(str(d) for d in self.media_dirs)
        return FoundSource(None, f"{name} is not under {folders}")

    def decoder(self, path: Path) -> FrameDecoder:
        """The decoder of ``path``; the :data:`OPEN_DECODERS` most recently used stay open, older ones are closed."""
        with self._lock:
            decoder = self._decoders.pop(path, None) or FrameDecoder(path)
            self._decoders[path] = decoder  # most recent last
            while len(self._decoders) > OPEN_DECODERS:
                self._decoders.pop(next(iter(self._decoders))).close()
            return decoder

    def close(self) -> None:
        """Close every open source file."""
        with self._lock:
            for decoder in self._decoders.values():
                decoder.close()
            self._decoders.clear()


class FrameDecoder:
    """Frames of one video file by index (see the module docstring); one request at a time."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._container: Any = None
        self._frames: Any = None
        self._next_index: int | None = None
        self._last: tuple[int, np.ndarray] | None = None

    def rgb(self, index: int, time_s: float, interval_s: float) -> np.ndarray:
        """Frame ``index`` (presentation time ``time_s``; ``interval_s`` apart from its neighbours) as (H, W, 3)
        uint8 RGB."""
        with self._lock:
            if self._last is not None and self._last[0] == index:
                return self._last[1]
            frame = None
            if self._next_index is not None and self._next_index <= index <= self._next_index + FORWARD_DECODE_FRAMES:
                frame = self._forward(index)
            if frame is None:
                frame = self._seek(index, time_s, max(interval_s, 1e-6) / 2)
            if frame is None:
                frame = self._from_start(index)
            self._last = (index, frame.to_ndarray(format="rgb24"))
            return self._last[1]

    def close(self) -> None:
        """Close the file (a later request opens it again)."""
        with self._lock:
            if self._container is not None:
                self._container.close()
            self._container, self._frames, self._next_index, self._last = None, None, None, None

    def _open(self) -> Any:
        import av

        if self._container is None:
            self._container = av.open(str(self.path))
        return self._container

    def _forward(self, index: int):
        """Decode on from the last decoded frame to ``index`` (None if the stream ends first)."""
        for frame in self._frames:
            current = self._next_index
            self._next_index += 1
            if current == index:
                return frame
        self._next_index = None
        return None

    def _seek(self, index: int, time_s: float, tolerance_s: float):
        """Seek before ``time_s`` and decode to the frame at that time (None when timestamps cannot tell it)."""
        container = self._open()
        stream = container.streams.video[0]
        if stream.time_base is None:
            return None
        for back_s in SEEK_BACK_S:
            target = max(0.0, time_s - back_s)
            container.seek(int(target / float(stream.time_base)), stream=stream, backward=True, any_frame=False)
            self._frames = container.decode(stream)
            for frame in self._frames:
                if frame.time is None:
                    self._next_index = None
                    return None
                if frame.time >= time_s - tolerance_s:
                    if abs(frame.time - time_s) <= tolerance_s:
                        self._next_index = index + 1
                        return frame
                    break  # the seek landed after the frame: start further back
            else:
                break
        self._next_index = None
        return None

    def _from_start(self, index: int):
        """Decode from the first frame, counting, to frame ``index`` (as ingest counted them)."""
        if self._container is not None:
            self._container.close()
            self._container = None
        container = self._open()
        self._frames = container.decode(container.streams.video[0])
        self._next_index = 0
        frame = self._forward(index)
        if frame is None:
            raise SourceError(f"{self.path}: the file ends before frame {index} (not the file the store was "
                              "extracted from?)")
        return frame

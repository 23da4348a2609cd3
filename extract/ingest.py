"""Video ingest with PyAV: frame presentation times, stream facts and 16 kHz mono audio, in one streaming pass.

Timeline rules (see design.md): T is the number of frames the decoder yields, and ``frame_time[i]`` is frame i's
presentation time in seconds from the container's timestamps, never ``i / fps``. Audio keeps its own start time on
the same clock, so every window-based feature can be placed by ``frame_time``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from queue import Full, Queue

import av
import numpy as np

from features_store.errors import AffectsyncError

AUDIO_SAMPLE_RATE_HZ = 16_000

FrameSink = Callable[[int, float, "av.VideoFrame"], None]
"""Called as ``sink(frame_index, frame_time_s, frame)`` for every decoded video frame, in order."""


class IngestError(AffectsyncError, RuntimeError):
    """A video could not be ingested; the message names the file and the cause."""

    def __init__(self, path: Path, cause: str):
        super().__init__(f"{path}: {cause}")
        self.path = path
        self.cause = cause


@dataclass(frozen=True)
class AudioTrack:
    """Mono float32 audio at ``sample_rate_hz``; sample k plays at ``start_time_s + k / sample_rate_hz``.

    ``start_time_s`` is on the video's ``frame_time`` clock (the container's presentation timeline).
    """

    samples: np.ndarray
    sample_rate_hz: int
    start_time_s: float
    source_sample_rate_hz: int
    source_channels: int
    gaps_s: tuple[tuple[float, float], ...] = ()  # (start, end) seconds of stretches without audio, silence-filled
    n_frames_dropped: int = 0  # decoded audio frames dropped because their timestamps overlapped earlier audio

    @property
    def end_time_s(self) -> float:
        """Time just after the last sample, in seconds."""
        return self.start_time_s + len(self.samples) / self.sample_rate_hz

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate_hz


@dataclass(frozen=True)
class DecodedVideo:
    """What one pass over a video yields: its frame timeline, stream facts and (when present) its audio."""

    path: Path
    frame_time: np.ndarray  # (T,) float64 seconds, presentation times of the decoded frames
    width: int
    height: int
    fps_nominal: float  # the stream's declared (guessed) frame rate, frames/s
    video_codec: str
    audio: AudioTrack | None
    audio_reason: str | None  # why ``audio`` is None, else None
    n_frames_without_timestamp: int  # frames whose time was extrapolated from the previous one
    declared_duration_s: float | None = None  # what the container says, for spotting truncated files
    declared_n_frames: int | None = None  # what the stream header says (None when unknown)

    @property
    def n_frames(self) -> int:
        return len(self.frame_time)

    @property
    def frame_interval_s(self) -> float:
        """Median spacing of frame times in seconds (1 / nominal fps for a single frame)."""
        if self.n_frames > 1:
            return float(np.median(np.diff(self.frame_time)))
        return 1.0 / self.fps_nominal if self.fps_nominal > 0 else 0.0

    @property
    def fps_average(self) -> float:
        """Average frame rate measured from the decoded times, frames/s."""
        if self.n_frames > 1:
            return (self.n_frames - 1) / float(self.frame_time[-1] - self.frame_time[0])
        return self.fps_nominal

    @property
    def duration_s(self) -> float:
        """Span of the frame timeline plus one frame interval, in seconds."""
        return float(self.frame_time[-1] - self.frame_time[0]) + self.frame_interval_s

    @property
    def audio_offset_s(self) -> float | None:
        """Audio start minus first frame time in seconds (positive: audio starts late); None without audio."""
        if self.audio is None:
            return None
        return self.audio.start_time_s - float(self.frame_time[0])


def _rate(value: Fraction | None) -> float | None:
    return float(value) if value else None


AUDIO_GAP_TOLERANCE_S = 0.010
FRAMES_AHEAD = 32
"""Frames a visual pass decodes ahead of its consumer (:func:`iter_rgb_frames`): 32 frames of 1080p are 200 MB."""
"""Audio timestamps may jitter by this much before a gap is filled or an overlap dropped."""

NOT_VIDEO_FORMATS = frozenset({"tty", "image2", "apng", "gif", "webp_pipe"})
"""FFmpeg demuxers that turn text or still images into 'video'; such inputs are rejected as not a video."""


def _silence_like(frame: av.AudioFrame, n_samples: int) -> av.AudioFrame:
    """A frame of ``n_samples`` zeros with ``frame``'s format, layout and rate."""
    template = frame.to_ndarray()
    zeros = np.zeros((template.shape[0], template.shape[1] // frame.samples * n_samples), template.dtype)
    silent = av.AudioFrame.from_ndarray(zeros, format=frame.format.name, layout=frame.layout.name)
    silent.sample_rate = frame.sample_rate
    return silent


class _AudioCollector:
    """Resamples decoded audio to 16 kHz mono float32, keeping every frame at its timestamp.

    A gap of more than :data:`AUDIO_GAP_TOLERANCE_S` before a frame is filled with silence and recorded in
    ``gaps_s``; a frame that overlaps audio already placed by more than that is dropped and counted. A change of
    sample rate, format or layout mid-stream starts a new resampler.
    """

    def __init__(self, stream: av.audio.stream.AudioStream):
        self.resampler: av.AudioResampler | None = None
        self.signature: tuple | None = None
        self.chunks: list[np.ndarray] = []
        self.start_time_s: float | None = None
        self.placed_until_s = 0.0  # time just after the last input sample handed to the resampler
        self.gaps_s: list[tuple[float, float]] = []
        self.n_frames_dropped = 0
        self.source_sample_rate_hz = stream.codec_context.sample_rate or 0
        self.source_channels = stream.codec_context.channels or 0

    def add(self, frame: av.AudioFrame) -> None:
        if frame.samples == 0:
            return
        if frame.time is None and self.start_time_s is None:
            return  # cannot be placed on the timeline; wait for the first timestamped frame
        time_s = float(frame.time) if frame.time is not None else self.placed_until_s
        if self.start_time_s is None:
            self.start_time_s = self.placed_until_s = time_s
        shift_s = time_s - self.placed_until_s
        if shift_s < -AUDIO_GAP_TOLERANCE_S:
            self.n_frames_dropped += 1
            return
        if shift_s > AUDIO_GAP_TOLERANCE_S:
            self.gaps_s.append((self.placed_until_s, time_s))
            self._feed(_silence_like(frame, round(shift_s * frame.sample_rate)))
        self._feed(frame)

    def _feed(self, frame: av.AudioFrame) -> None:
        signature = (frame.format.name, frame.layout.name, frame.sample_rate)
        if signature != self.signature:
            self._flush()
            self.resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_SAMPLE_RATE_HZ)
            self.signature = signature
        self.chunks += [out.to_ndarray().reshape(-1) for out in self.resampler.resample(frame)]
        self.placed_until_s += frame.samples / frame.sample_rate

    def _flush(self) -> None:
        if self.resampler is not None:
            self.chunks += [out.to_ndarray().reshape(-1) for out in self.resampler.resample(None)]

    def track(self) -> AudioTrack | None:
        self._flush()
        if self.start_time_s is None or not self.chunks:
            return None
        samples = np.empty(sum(len(chunk) for chunk in self.chunks), np.float32)
        filled = 0
        self.chunks.reverse()
        while self.chunks:  # chunk by chunk, freeing each: peak memory is the audio once, not twice
            chunk = self.chunks.pop()
            samples[filled:filled + len(chunk)] = chunk
            filled += len(chunk)
        return AudioTrack(samples, AUDIO_SAMPLE_RATE_HZ, self.start_time_s, self.source_sample_rate_hz,
                          self.source_channels, tuple(self.gaps_s), self.n_frames_dropped)


def decode_video(path: str | Path, frame_sink: FrameSink | None = None) -> DecodedVideo:
    """Decode ``path`` once, streaming: frame times, stream facts and 16 kHz mono audio.

    Video frames are handed to ``frame_sink`` (if given) as they are decoded and are not kept, so memory stays
    bounded by the audio (64 kB per second). Raises :class:`IngestError` naming the file and the cause.
    """
    path = Path(path)
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise IngestError(path, f"cannot open as a video ({_cause(exc)})") from exc
    with container:
        if not container.streams.video:
            raise IngestError(path, "not a video (no video stream)")
        if container.format.name in NOT_VIDEO_FORMATS or container.format.name.endswith("_pipe"):
            raise IngestError(path, f"not a video (FFmpeg reads it as {container.format.name!r})")
        video_stream = container.streams.video[0]
        video_stream.thread_type = "AUTO"
        audio_stream = container.streams.audio[0] if container.streams.audio else None
        collector = _AudioCollector(audio_stream) if audio_stream is not None else None
        fps_nominal = _rate(video_stream.guessed_rate) or _rate(video_stream.average_rate) or 0.0

        frame_times: list[float] = []
        missing_times = 0
        streams = [video_stream] + ([audio_stream] if audio_stream is not None else [])
        try:
            for packet in container.demux(streams):
                for frame in packet.decode():
                    if packet.stream.type == "audio":
                        collector.add(frame)
                        continue
                    if frame_times and frame.time is not None and frame.time <= frame_times[-1]:
                        raise IngestError(path, f"frame timestamps do not increase at frame {len(frame_times)} "
                                                f"({frame.time:.6f} s after {frame_times[-1]:.6f} s)")
                    time_s = frame.time
                    if time_s is None:  # broken timestamps: extrapolate, and count it
                        missing_times += 1
                        step = 1.0 / fps_nominal if fps_nominal else 0.0
                        time_s = frame_times[-1] + step if frame_times else 0.0
                    if frame_sink is not None:
                        frame_sink(len(frame_times), float(time_s), frame)
                    frame_times.append(float(time_s))
            audio = collector.track() if collector is not None else None
        except (av.FFmpegError, ValueError) as exc:
            raise IngestError(path, f"decoding failed after {len(frame_times)} frames ({_cause(exc)})") from exc
        if not frame_times:
            raise IngestError(path, "no video frames could be decoded")

        if audio_stream is None:
            audio_reason = "no audio stream in file"
        elif audio is None:
            audio_reason = "audio stream yielded no decodable samples"
        else:
            audio_reason = None
        return DecodedVideo(
            path=path,
            frame_time=np.asarray(frame_times, dtype=np.float64),
            width=video_stream.codec_context.width,
            height=video_stream.codec_context.height,
            fps_nominal=fps_nominal,
            video_codec=video_stream.codec_context.name,
            audio=audio,
            audio_reason=audio_reason,
            n_frames_without_timestamp=missing_times,
            declared_duration_s=_declared_duration_s(container, video_stream),
            declared_n_frames=video_stream.frames or None,
        )


def iter_rgb_frames(path: str | Path, ahead_frames: int | None = None) -> Iterator[np.ndarray]:
    """The video's frames as (H, W, 3) uint8 RGB arrays, in decoding order: the same frames :func:`decode_video`
    counts (video stream only, no audio), for a second pass by the visual extractors. A thread decodes up to
    ``ahead_frames`` frames (default :data:`FRAMES_AHEAD`; 0: none) ahead of the caller, so decoding overlaps what
    the caller does with the frames."""
    ahead_frames = FRAMES_AHEAD if ahead_frames is None else ahead_frames
    frames = _decode_rgb(Path(path))
    return frames if ahead_frames <= 0 else read_ahead(frames, ahead_frames)


def _decode_rgb(path: Path) -> Iterator[np.ndarray]:
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
    except (av.FFmpegError, OSError, IndexError) as exc:
        raise IngestError(path, f"decoding frames failed ({_cause(exc)})") from exc


def read_ahead(items: Iterator, ahead: int) -> Iterator:
    """``items`` as they are, produced by a thread that stays at most ``ahead`` items in front of the caller; an
    error there is raised here, and leaving the loop early stops the thread."""
    queue: Queue = Queue(maxsize=ahead)
    stop = threading.Event()
    done = object()

    def put(entry: tuple) -> bool:
        """Queue ``entry`` unless the consumer has left; False once it has."""
        while not stop.is_set():
            try:
                queue.put(entry, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((done, None))
        except BaseException as exc:  # noqa: BLE001  (handed to the consumer, raised there)
            put((done, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item, error = queue.get()
            if item is done:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join()  # it notices within 0.1 s, or once the frame it is decoding is done


def _declared_duration_s(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    """The video stream's duration from the file's headers in seconds (the container's when the stream has none)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return container.duration / av.time_base if container.duration is not None else None


def _cause(exc: BaseException) -> str:
    """A one-line cause from an FFmpeg/OS error, without the file name it repeats."""
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())

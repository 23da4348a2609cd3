"""Small real videos written with PyAV for edge cases: clicks at known frame times, no audio, variable frame rate,
real clips played several times in a row."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

NTSC_FPS = Fraction(30000, 1001)


def click_track(duration_s: float, click_times_s: list[float], sample_rate_hz: int, seed: int = 0) -> np.ndarray:
    """Quiet noise (about -60 dBFS) with a 2 ms full-scale click starting at each of ``click_times_s``."""
    rng = np.random.default_rng(seed)
    samples = (rng.standard_normal(int(duration_s * sample_rate_hz)) * 1e-3).astype(np.float32)
    click = rng.uniform(-0.9, 0.9, int(0.002 * sample_rate_hz)).astype(np.float32)
    for time_s in click_times_s:
        start = int(round(time_s * sample_rate_hz)) - len(click) // 2
        samples[start:start + len(click)] = click
    return samples


def write_video(path: Path, n_frames: int, fps: Fraction = NTSC_FPS, audio: np.ndarray | None = None,
                audio_rate_hz: int = 48_000, audio_start_s: float = 0.0, frame_pts_ms: list[int] | None = None,
                audio_drop_s: tuple[float, float] | None = None,
                size: tuple[int, int] = (64, 48), video_codec: str = "mpeg4", audio_codec: str = "aac") -> Path:
    """Write a video of moving grey ramps (and optional mono ``audio``) with PyAV.

    ``frame_pts_ms`` gives explicit frame times in milliseconds (variable frame rate; use a .mkv path);
    otherwise frame i is at i / fps. ``audio_start_s`` delays the audio track's first sample; audio frames starting
    inside ``audio_drop_s`` (start, end seconds) are not written, leaving a gap in the track.
    """
    width, height = size
    with av.open(str(path), "w") as container:
        video = container.add_stream(video_codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if frame_pts_ms is not None:
            video.codec_context.time_base = Fraction(1, 1000)
        stream_audio = None
        if audio is not None:
            stream_audio = container.add_stream(audio_codec, rate=audio_rate_hz, layout="mono")
        ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
        for i in range(n_frames):
            pixels = np.broadcast_to((ramp + 7 * i) % 256, (height, width, 3)).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            if frame_pts_ms is not None:
                frame.pts, frame.time_base = frame_pts_ms[i], Fraction(1, 1000)
            else:
                frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if stream_audio is not None:
            _write_audio(container, stream_audio, audio, audio_rate_hz, audio_start_s, audio_drop_s)
    return path


def _write_audio(container, stream, audio: np.ndarray, rate_hz: int, start_s: float,
                 drop_s: tuple[float, float] | None) -> None:
    frame_size = stream.codec_context.frame_size or 1024
    pts = int(round(start_s * rate_hz))
    for start in range(0, len(audio), frame_size):
        chunk = audio[start:start + frame_size]
        if len(chunk) < frame_size and stream.codec_context.frame_size:
            chunk = np.pad(chunk, (0, frame_size - len(chunk)))
        frame = av.AudioFrame.from_ndarray(chunk[None, :].astype(np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate_hz, pts, Fraction(1, rate_hz)
        pts += len(chunk)
        if drop_s is not None and drop_s[0] <= start / rate_hz < drop_s[1]:
            continue
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def decoded_frame_times(path: Path) -> list[float]:
    """Presentation times of every frame PyAV decodes from ``path`` (an independent reading for the tests)."""
    with av.open(str(path)) as container:
        return [float(frame.time) for frame in container.decode(video=0)]


def write_frames(path: Path, frames: list[np.ndarray], fps: Fraction = Fraction(25), audio: np.ndarray | None = None,
                 audio_rate_hz: int = 48_000) -> Path:
    """Write (H, W, 3) uint8 RGB ``frames`` (even H and W) as an H.264 video at ``fps``, with mono float ``audio``
    (AAC at ``audio_rate_hz``) when given."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream_audio = None if audio is None else container.add_stream("aac", rate=audio_rate_hz, layout="mono")
        for i, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if stream_audio is not None:
            _write_audio(container, stream_audio, audio, audio_rate_hz, 0.0, None)
    return path


def repeat_clip(source: Path, times: int, path: Path) -> Path:
    """``source`` played ``times`` times in a row: its frames, and its audio mixed to mono, cut or padded to the
    frames' duration so that every repetition starts with its frames (H.264 + AAC)."""
    with av.open(str(source)) as container:
        video = container.streams.video[0]
        fps = video.average_rate or video.guessed_rate
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    with av.open(str(source)) as container:
        rate_hz = container.streams.audio[0].rate
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate_hz)
        audio = np.concatenate([piece.to_ndarray().reshape(-1) for frame in container.decode(audio=0)
                                for piece in resampler.resample(frame)])
    take = np.zeros(int(round(len(frames) / fps * rate_hz)), dtype=np.float32)
    take[:min(len(take), len(audio))] = audio[:len(take)]
    return write_frames(path, frames * times, Fraction(fps), np.tile(take, times), rate_hz)

"""Benchmark: peak memory of extraction is flat with video length (issue 8; target: 60 min within 20 % of 10 min,
both under 4 GB).

Generates long videos from the GRID sample: its 3 s of frames (downscaled to 180 x 144, the face about 50 px) and
speech looped to 10 and to 60 minutes, at ``BENCH_FPS`` frames/s (default 10: an hour is 36 000 frames, and the face
stages take most of the time). Each is extracted with ``python -m extract`` (logmel, mfcc_mel, face_crop, fer) into
a fresh store, in its own process; its peak resident memory comes from ``os.wait4`` (the kernel's own maximum, not
sampling). Also reported: what ``face_crop`` and ``face_mask`` would take held whole in memory, as before they were
streamed. Prints JSON lines (``make bench``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from bench.audio import REPO_ROOT
from bench.results import emit

GRID_SAMPLE = REPO_ROOT / "samples" / "grid_id2_vcd_swwp2s.mpg"
FEATURES = "logmel,mfcc_mel,face_crop,fer"
LENGTHS_MIN = (10, 60)
SIZE_PX = (180, 144)
AUDIO_RATE_HZ = 16_000
FPS = int(os.environ.get("BENCH_FPS", "10"))


def grid_material() -> tuple[list[np.ndarray], np.ndarray]:
    """The sample's frames (downscaled RGB) at ``FPS`` and its mono 16 kHz audio, for looping."""
    with av.open(str(GRID_SAMPLE)) as container:
        frames = [frame.reformat(*SIZE_PX, format="rgb24").to_ndarray() for frame in container.decode(video=0)]
    with av.open(str(GRID_SAMPLE)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE_HZ)
        audio = np.concatenate([out.to_ndarray()[0] for frame in container.decode(audio=0)
                                for out in resampler.resample(frame)])
    step = max(1, round(25 / FPS))  # the sample is 25 frames/s
    return frames[::step], audio


def write_long_video(path: Path, minutes: int, frames: list[np.ndarray], audio: np.ndarray) -> int:
    """Loops ``frames`` and ``audio`` for ``minutes``; returns the number of frames."""
    n_frames = minutes * 60 * FPS
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=Fraction(FPS))
        video.width, video.height = SIZE_PX
        video.pix_fmt = "yuv420p"
        sound = container.add_stream("aac", rate=AUDIO_RATE_HZ, layout="mono")
        for index in range(n_frames):
            picture = av.VideoFrame.from_ndarray(frames[index % len(frames)], format="rgb24")
            container.mux(video.encode(picture))
        container.mux(video.encode())
        samples = np.resize(audio, minutes * 60 * AUDIO_RATE_HZ).astype(np.float32)
        frame_size = sound.codec_context.frame_size or 1024
        for start in range(0, len(samples) - frame_size + 1, frame_size):
            chunk = av.AudioFrame.from_ndarray(samples[None, start:start + frame_size], format="flt", layout="mono")
            chunk.sample_rate = AUDIO_RATE_HZ
            chunk.pts = start
            container.mux(sound.encode(chunk))
        container.mux(sound.encode())
    return n_frames


def peak_rss_of_extraction(video: Path, store: Path) -> tuple[float, float]:
    """(peak resident memory in GB, wall seconds) of one ``python -m extract`` process."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "extract", str(video), "--store", str(store),
                                "--features", FEATURES, "--no-progress"], cwd=REPO_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"extraction of {video.name} failed: {stderr.decode()[-2000:]}")
    return usage.ru_maxrss / 2**20, time.perf_counter() - started  # ru_maxrss is in KiB on Linux


def main() -> int:
    frames, audio = grid_material()
    peaks = {}
    with tempfile.TemporaryDirectory() as workdir:
        for minutes in LENGTHS_MIN:
            video = Path(workdir) / f"grid_loop_{minutes}min.mp4"
            n_frames = write_long_video(video, minutes, frames, audio)
            peak_gb, seconds = peak_rss_of_extraction(video, Path(workdir) / f"{minutes}.zarr")
            peaks[minutes] = peak_gb
            held_gb = n_frames * (112 * 112 * 3 + 112 * 112) / 1e9
            emit(bench="peak_memory", minutes=minutes, frames=n_frames, fps=FPS, size_px=list(SIZE_PX),
                 features=FEATURES, peak_rss_gb=round(peak_gb, 3), seconds=round(seconds, 1),
                 face_crop_and_mask_if_held_whole_gb=round(held_gb, 2))
    ratio = peaks[LENGTHS_MIN[1]] / peaks[LENGTHS_MIN[0]]
    emit(bench="peak_memory_ratio", what=f"{LENGTHS_MIN[1]} min over {LENGTHS_MIN[0]} min", ratio=round(ratio, 3),
         target="<= 1.2, both under 4 GB", met=bool(ratio <= 1.2 and max(peaks.values()) < 4.0))
    return 0


if __name__ == "__main__":
    sys.exit(main())

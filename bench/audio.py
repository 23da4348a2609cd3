"""Benchmark: decode speed, each audio feature's speed (x real time) and the lhotse peer.

Prints one JSON object per line. Run with ``make bench`` (which installs lhotse, the peer, for this run only).
Every comparison is made in the same run on the same data and reported as a ratio.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.results import best_seconds, emit
from extract import registry
from extract.audio import AudioExtractor
from extract.ingest import AudioTrack, DecodedVideo, decode_video
from features_store.store import FeatureStore

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_VIDEO = REPO_ROOT / "samples" / "crema_d_1001_DFA_concat.mp4"
AUDIO_MINUTES = 10.0


def long_video(sample: DecodedVideo, minutes: float) -> DecodedVideo:
    """The sample's real speech tiled to ``minutes``, with frame times at the sample's frame rate."""
    n_samples = int(minutes * 60 * sample.audio.sample_rate_hz)
    samples = np.resize(sample.audio.samples, n_samples)
    audio = AudioTrack(samples, sample.audio.sample_rate_hz, 0.0, sample.audio.source_sample_rate_hz, 1)
    frame_time = np.arange(int(minutes * 60 * sample.fps_nominal)) / sample.fps_nominal
    return DecodedVideo(sample.path, frame_time, sample.width, sample.height, sample.fps_nominal,
                        sample.video_codec, audio, None, 0)


def bench_decode() -> DecodedVideo:
    video = decode_video(SAMPLE_VIDEO)
    seconds = best_seconds(lambda: decode_video(SAMPLE_VIDEO))
    emit(bench="decode", video=SAMPLE_VIDEO.name, frames=video.n_frames, seconds=round(seconds, 4),
         frames_per_s=round(video.n_frames / seconds, 1), x_real_time=round(video.duration_s / seconds, 1))
    return video


def bench_features(video: DecodedVideo) -> None:
    for name in registry.feature_names(offline_only=True):
        extractor = registry.create(name)
        if not isinstance(extractor, AudioExtractor):  # face and speech features have their own benchmarks
            continue
        extractor.extract(video)  # warm caches (filterbanks, imports)
        seconds = best_seconds(lambda: extractor.extract(video))
        emit(bench="audio_feature", feature=name, audio_s=video.audio.duration_s, seconds=round(seconds, 4),
             x_real_time=round(video.audio.duration_s / seconds, 1))


def bench_lhotse_peer(video: DecodedVideo, workdir: Path) -> None:
    """mel64 computed and stored by affectsync (zarr) vs the same 64-band log-Mel by lhotse (Fbank + its uncompressed HDF5 writer; affectsync stores raw chunks too)."""
    try:
        from lhotse import Fbank, FbankConfig, MonoCut, Recording
        from lhotse.features.io import NumpyHdf5Writer
    except ImportError as exc:
        emit(bench="lhotse_ratio", skipped=f"lhotse not installed ({exc}); run through `make bench`")
        return
    import soundfile

    wav = workdir / "audio.wav"
    soundfile.write(wav, video.audio.samples, video.audio.sample_rate_hz)
    recording = Recording.from_file(wav)
    cut = MonoCut(id="bench", start=0, duration=recording.duration, channel=0, recording=recording)
    fbank = Fbank(FbankConfig(num_mel_bins=64, frame_length=0.02, frame_shift=0.01))

    def lhotse_run():
        with NumpyHdf5Writer(workdir / "lhotse_feats", mode="w") as writer:
            cut.compute_and_store_features(fbank, writer)

    mel64 = registry.create("mel64")
    store = FeatureStore(str(workdir / "bench.zarr"), mode="a")
    group = store.create_video("bench", {"n_frames": video.n_frames})

    def affectsync_run():
        for name, array in mel64.extract(video).items():
            group.write(name, array.data, array.attrs)

    lhotse_run(), affectsync_run()  # warm up both
    lhotse_s, ours_s = best_seconds(lhotse_run), best_seconds(affectsync_run)
    duration = video.audio.duration_s
    emit(bench="lhotse_ratio", what="64-band log-Mel, 20 ms window, 10 ms hop, computed and stored",
         audio_s=duration, affectsync_x_real_time=round(duration / ours_s, 1),
         lhotse_x_real_time=round(duration / lhotse_s, 1), ratio_affectsync_over_lhotse=round(lhotse_s / ours_s, 2))


def main() -> int:
    sample = bench_decode()
    video = long_video(sample, AUDIO_MINUTES)
    bench_features(video)
    with tempfile.TemporaryDirectory() as workdir:
        bench_lhotse_peer(video, Path(workdir))
    return 0


if __name__ == "__main__":
    sys.exit(main())

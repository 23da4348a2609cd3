"""Shared fixtures: paths to real media, generated edge-case videos, and one extraction of samples/ per session."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from bench.speech_corpora import SHARED_MEDIA
from extract import registry
from extract.run import run_extraction
from features_store import FeatureStore
from media_factory import NTSC_FPS, click_track, write_video

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLES = REPO_ROOT / "samples"

CLICK_FRAMES = (30, 900, 1750)  # the last one 58.4 s in: an i*hop placement would be 35 ms late there
CLICK_VIDEO_FRAMES = 1798       # 60 s at 29.97 fps


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op torch thread: tiny models train faster on one, and much faster when other jobs share the cores
    (``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shared_media() -> Path:
    """../shared/media, or skip when this checkout has no shared/ beside it."""
    if not SHARED_MEDIA.is_dir():
        pytest.skip(f"real test media not found at {SHARED_MEDIA}")
    return SHARED_MEDIA


@pytest.fixture(scope="session")
def sample_store(tmp_path_factory) -> FeatureStore:
    """samples/ extracted once with every offline feature."""
    location = tmp_path_factory.mktemp("stores") / "sample.zarr"
    report = run_extraction([SAMPLES], str(location), registry.feature_names(offline_only=True), progress=False)
    assert not report.failed, report.failed
    return FeatureStore(str(location))


def make_click_video(path: Path, audio_start_s: float) -> Path:
    """A 1-minute 29.97 fps video whose AAC track (48 kHz) clicks exactly at the times of CLICK_FRAMES."""
    click_times = [float(Fraction(frame) / NTSC_FPS) - audio_start_s for frame in CLICK_FRAMES]
    audio = click_track(CLICK_VIDEO_FRAMES / float(NTSC_FPS) - audio_start_s, click_times, 48_000)
    return write_video(path, CLICK_VIDEO_FRAMES, audio=audio, audio_start_s=audio_start_s)


@pytest.fixture(scope="session")
def click_video(tmp_path_factory) -> Path:
    return make_click_video(tmp_path_factory.mktemp("media") / "clicks.mp4", audio_start_s=0.0)


@pytest.fixture(scope="session")
def silent_video(tmp_path_factory) -> Path:
    """A video with no audio stream at all."""
    return write_video(tmp_path_factory.mktemp("media") / "no_audio.mp4", 45)

"""Ingest: frame count and presentation times equal what the decoder yields; audio at 16 kHz on the same clock."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SAMPLES
from extract.ingest import AUDIO_SAMPLE_RATE_HZ, IngestError, decode_video, iter_rgb_frames, read_ahead
from media_factory import decoded_frame_times, write_video

# (path under ../shared/media, frames, nominal fps) from ../shared/media/README.md
SHARED_VIDEOS = [
    ("crema_d/derived_1001_DFA_concat.mp4", 379, 30000 / 1001),
    ("grid/bbaf2n.mpg", 75, 25.0),
    ("grid/id2_vcd_swwp2s.mpg", 75, 25.0),
    ("pyfeat/single_face.mp4", 72, 30.0),
    ("pyfeat/WolfgangLanger_Pexels.mp4", 472, 24000 / 1001),
]
CREMA_CLIPS = ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]


@pytest.mark.parametrize("relative, n_frames, fps", SHARED_VIDEOS)
def test_shared_media_frame_count_and_times(shared_media, relative, n_frames, fps):
    path = shared_media / relative
    video = decode_video(path)
    assert video.n_frames == n_frames
    np.testing.assert_array_equal(video.frame_time, decoded_frame_times(path))
    assert video.fps_nominal == pytest.approx(fps, rel=1e-3)
    assert np.all(np.diff(video.frame_time) > 0)
    assert video.audio is not None and video.audio.sample_rate_hz == AUDIO_SAMPLE_RATE_HZ
    assert video.audio.samples.dtype == np.float32 and video.audio.samples.ndim == 1
    assert video.audio.duration_s == pytest.approx(video.duration_s, abs=0.2)


@pytest.mark.parametrize("emotion", CREMA_CLIPS)
def test_crema_flv_clips(shared_media, emotion):
    path = shared_media / f"crema_d/1001_DFA_{emotion}_XX.flv"
    video = decode_video(path)
    assert 56 <= video.n_frames <= 70
    np.testing.assert_array_equal(video.frame_time, decoded_frame_times(path))
    assert (video.width, video.height) == (480, 360)


@pytest.mark.parametrize("path", sorted(p for p in SAMPLES.iterdir() if p.suffix in {".mp4", ".mpg"}),
                         ids=lambda p: p.name)
def test_samples_frame_times(path):
    video = decode_video(path)
    times = decoded_frame_times(path)
    assert video.n_frames == len(times) > 0
    np.testing.assert_array_equal(video.frame_time, times)


def test_variable_frame_rate_keeps_container_times(tmp_path):
    pts_ms = [0, 33, 66, 133, 166, 266, 300, 333, 400, 500, 533, 633]
    video = decode_video(write_video(tmp_path / "vfr.mkv", len(pts_ms), frame_pts_ms=pts_ms))
    np.testing.assert_allclose(video.frame_time, np.array(pts_ms) / 1000, atol=1e-9)
    assert video.fps_average == pytest.approx((len(pts_ms) - 1) / 0.633)


def test_audio_starting_late_keeps_its_offset(tmp_path):
    from conftest import make_click_video
    video = decode_video(make_click_video(tmp_path / "late.mp4", audio_start_s=0.5))
    # the AAC encoder's priming samples (1024 at 48 kHz) sit just before the first real sample
    assert video.audio_offset_s == pytest.approx(0.5 - 1024 / 48_000, abs=1e-3)


def test_video_without_audio(silent_video):
    video = decode_video(silent_video)
    assert video.n_frames == 45 and video.audio is None
    assert video.audio_reason == "no audio stream in file"


def test_not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("these are meeting notes, not a video\n")
    with pytest.raises(IngestError) as error:
        decode_video(path)
    assert str(path) in str(error.value) and "cannot open" in str(error.value)


def test_audio_only_file_is_not_a_video(shared_media):
    path = shared_media / "librivox/sense_and_sensibility_01_austen_64kb-0880.wav"
    with pytest.raises(IngestError, match="no video stream"):
        decode_video(path)


def test_still_image_is_not_a_video(shared_media):
    with pytest.raises(IngestError, match="not a video"):
        decode_video(shared_media / "stills/astronaut.png")


def test_truncated_file_keeps_what_decodes_and_its_declared_length(tmp_path):
    source = SAMPLES / "grid_id2_vcd_swwp2s.mpg"
    truncated = tmp_path / "truncated.mpg"
    truncated.write_bytes(source.read_bytes()[: source.stat().st_size * 6 // 10])
    video = decode_video(truncated)
    assert 0 < video.n_frames < 75
    np.testing.assert_array_equal(video.frame_time, decoded_frame_times(truncated))


def test_frames_decoded_ahead_are_the_frames_in_order_and_the_thread_ends_with_the_loop():
    import itertools
    import threading

    video = SAMPLES / "grid_id2_vcd_swwp2s.mpg"
    plain = list(iter_rgb_frames(video, ahead_frames=0))
    ahead = list(iter_rgb_frames(video, ahead_frames=4))
    assert len(plain) == len(ahead) == decode_video(video).n_frames
    assert all(np.array_equal(a, b) for a, b in zip(plain, ahead))
    frames = iter_rgb_frames(video, ahead_frames=4)
    assert len(list(itertools.islice(frames, 3))) == 3
    frames.close()  # a consumer that stops early
    assert not any(t.name == "read-ahead" for t in threading.enumerate())

    def fails_after_two():
        yield 1
        yield 2
        raise ValueError("decoder gave up")
    with pytest.raises(ValueError, match="decoder gave up"):
        list(read_ahead(fails_after_two(), 1))
    with pytest.raises(IngestError, match="decoding frames failed"):
        list(iter_rgb_frames(SAMPLES / "missing.mp4"))

"""Audio features: placed by frame time (no drift), equal to librosa's reference computation, zeros without audio."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from conftest import CLICK_FRAMES, CLICK_VIDEO_FRAMES, make_click_video
from extract.audio import LogMel, Mel64, MfccMel, audio_valid_mask
from extract.ingest import decode_video

SR = 16_000


@pytest.fixture(scope="module")
def click_decoded(click_video):
    return decode_video(click_video)


def _window(audio, centre_time_s: float, length: int) -> np.ndarray:
    centre = int(round((centre_time_s - audio.start_time_s) * SR))
    return audio.samples[centre - length // 2: centre - length // 2 + length]


def _reference_log_mel(segment: np.ndarray, n_fft: int, n_mels: int) -> np.ndarray:
    """librosa's own mel spectrogram of one window (Hann, zero-padded to n_fft, no centring), in dB."""
    left = (n_fft - len(segment)) // 2
    padded = np.pad(segment, (left, n_fft - len(segment) - left))
    power = librosa.feature.melspectrogram(y=padded, sr=SR, n_fft=n_fft, hop_length=n_fft,
                                           win_length=len(segment), center=False, n_mels=n_mels, power=2.0)
    return librosa.power_to_db(power[:, 0], ref=1.0, amin=1e-10, top_db=None)


@pytest.mark.parametrize("audio_start_s", [0.0, 0.5])
def test_click_energy_peaks_on_its_frame(tmp_path, audio_start_s):
    """Clicks at known frame times of a 1-minute 29.97 fps video (one 58 s in) land on their frame: no drift."""
    video = decode_video(make_click_video(tmp_path / "clicks.mp4", audio_start_s))
    assert video.n_frames == CLICK_VIDEO_FRAMES
    logmel = LogMel().extract(video)["logmel"].data
    energy = logmel[:, 80:120].mean(axis=1)  # the block of frame t itself
    for frame in CLICK_FRAMES:
        neighbourhood = energy[frame - 5: frame + 6]
        assert np.argmax(neighbourhood) == 5, (frame, neighbourhood.round(1))
        assert neighbourhood[5] > np.delete(neighbourhood, 5).max() + 20  # dB above every neighbour
    mfcc_mel = MfccMel().extract(video)["mfcc_mel"].data
    for frame in CLICK_FRAMES:
        assert np.argmax(mfcc_mel[frame - 5: frame + 6, 40:].mean(axis=1)) == 5
    mel64 = Mel64().extract(video)
    rows = mel64["mel64_row"].data
    for frame in CLICK_FRAMES:
        row = rows[frame]
        assert abs(mel64["mel64_time"].data[row] - video.frame_time[frame]) <= 0.005
        assert np.argmax(mel64["mel64"].data[row - 3: row + 4].mean(axis=1)) == 3


def test_logmel_equals_librosa_and_stacks_neighbours(click_decoded):
    logmel = LogMel().extract(click_decoded)["logmel"].data
    assert logmel.shape == (CLICK_VIDEO_FRAMES, 200) and logmel.dtype == np.float32
    for frame in (10, 900, 1700):
        segment = _window(click_decoded.audio, click_decoded.frame_time[frame], 400)
        reference = _reference_log_mel(segment, n_fft=512, n_mels=40)
        np.testing.assert_allclose(logmel[frame, 80:120], reference, atol=0.05)
        for block, neighbour in enumerate(range(frame - 2, frame + 3)):
            np.testing.assert_array_equal(logmel[frame, 40 * block: 40 * block + 40], logmel[neighbour, 80:120])
    np.testing.assert_array_equal(logmel[0, 0:40], logmel[0, 80:120])  # edge: frame 0 repeats itself


def test_mfcc_mel_equals_librosa(click_decoded):
    features = MfccMel().extract(click_decoded)["mfcc_mel"]
    data = features.data
    assert data.shape == (CLICK_VIDEO_FRAMES, 168)
    length = round(2 * click_decoded.frame_interval_s * SR)
    assert features.attrs["window_s"] == pytest.approx(length / SR)
    for frame in (5, 1000):
        segment = _window(click_decoded.audio, click_decoded.frame_time[frame], length)
        reference = _reference_log_mel(segment, n_fft=features.attrs["n_fft"], n_mels=128)
        np.testing.assert_allclose(data[frame, 40:], reference, atol=0.05)
        mfcc = librosa.feature.mfcc(S=reference[:, None], n_mfcc=40)[:, 0]
        np.testing.assert_allclose(data[frame, :40], mfcc, rtol=1e-3, atol=0.05)


def test_mel64_equals_librosa_at_100_hz(click_decoded):
    out = Mel64().extract(click_decoded)
    audio = click_decoded.audio
    reference = librosa.power_to_db(librosa.feature.melspectrogram(
        y=audio.samples, sr=SR, n_fft=1024, hop_length=160, win_length=320, n_mels=64, center=True,
        pad_mode="constant"), ref=1.0, amin=1e-10, top_db=None).T
    n_rows = len(reference)  # librosa's rows: centres 0, 10 ms, ... up to the end of the audio
    assert out["mel64"].data.shape[1] == 64 and out["mel64"].data.shape[0] >= n_rows
    np.testing.assert_allclose(out["mel64"].data[:n_rows], reference, atol=0.05)
    assert out["mel64_valid"].data[:n_rows].all()
    beyond = out["mel64_time"].data - 0.01 >= audio.end_time_s  # rows whose window has no audio at all
    assert not out["mel64_valid"].data[beyond].any() and not out["mel64"].data[beyond].any()
    np.testing.assert_allclose(np.diff(out["mel64_time"].data), 0.01, atol=1e-9)
    assert out["mel64_time"].data[0] == audio.start_time_s
    distance = np.abs(out["mel64_time"].data[None, :] - click_decoded.frame_time[:, None])
    chosen = distance[np.arange(len(distance)), out["mel64_row"].data]
    np.testing.assert_allclose(chosen, distance.min(axis=1), atol=1e-9)  # nearest row (ties either way)


def test_no_audio_gives_zero_rows_and_invalid_flags(silent_video):
    video = decode_video(silent_video)
    assert not audio_valid_mask(video).any()
    for extractor in (LogMel(), MfccMel(), Mel64()):
        for name, array in extractor.extract(video).items():
            if name not in ("mel64_row", "mel64_time", "mel64_valid"):
                assert not np.any(array.data), name
    mel64 = Mel64().extract(video)
    assert mel64["mel64_time"].data[-1] >= video.frame_time[-1]  # the zero spectrogram still spans the video
    assert not mel64["mel64_valid"].data.any()


def test_frames_beyond_the_audio_are_invalid_and_zero(tmp_path):
    from media_factory import click_track, write_video
    path = write_video(tmp_path / "short_audio.mp4", 90, audio=click_track(1.0, [], 48_000))  # 3 s video, 1 s audio
    video = decode_video(path)
    valid = audio_valid_mask(video)
    assert valid[:25].all() and not valid[40:].any()
    logmel = LogMel().extract(video)["logmel"].data
    assert not np.any(logmel[~valid]) and np.all(logmel[valid][:, 80:120] != 0)


def test_mel64_spans_frames_before_late_audio(tmp_path):
    video = decode_video(make_click_video(tmp_path / "late.mp4", audio_start_s=0.5))
    out = Mel64().extract(video)
    times, rows = out["mel64_time"].data, out["mel64_row"].data
    np.testing.assert_allclose(times[rows], video.frame_time, atol=0.005 + 1e-9)  # never clipped to an edge row
    assert not out["mel64_valid"].data[times < video.audio.start_time_s - 0.01].any()
    assert out["mel64_valid"].data[(times > video.audio.start_time_s + 0.01) & (times < 59.0)].all()


def test_audio_gap_is_filled_at_its_time_and_flagged(tmp_path):
    """PCM audio with no packets from 1 s to 2 s: later audio stays at its timestamps, gap frames are invalid."""
    from media_factory import click_track, write_video
    rate = 16_000
    audio = click_track(3.0, [0.5, 2.5], rate)
    path = tmp_path / "gap.mkv"
    write_video(path, 90, audio=audio, audio_rate_hz=rate, audio_codec="pcm_s16le",
                audio_drop_s=(1.0, 2.0))
    video = decode_video(path)
    assert len(video.audio.gaps_s) == 1
    gap_start, gap_end = video.audio.gaps_s[0]
    assert gap_start == pytest.approx(1.0, abs=0.07) and gap_end == pytest.approx(2.0, abs=0.07)
    samples = np.abs(video.audio.samples)
    click_s = video.audio.start_time_s + np.argmax(samples[int(2 * rate):]) / rate + 2.0
    assert click_s == pytest.approx(2.5, abs=0.003)
    valid = audio_valid_mask(video)
    in_gap = (video.frame_time > gap_start + 0.02) & (video.frame_time < gap_end - 0.02)
    assert not valid[in_gap].any() and valid[video.frame_time > gap_end + 0.02].all()

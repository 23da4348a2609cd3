"""Frame-synchronized audio features: ``logmel`` (M3T), ``mfcc_mel`` (seed 002), ``mel64`` (TSAV) and ``mel64_fine``
(seed 001).

Every per-frame window is centred on ``frame_time[i]`` (converted to a sample position through the audio's own start
time), never on ``i * hop``, so nothing drifts however long the video and whatever its frame rate. One core,
:func:`log_mel_at`, computes log-Mel spectra at arbitrary window centres; librosa supplies the Mel filterbanks, the dB
scaling and the MFCC transform.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

import librosa
import numpy as np
import scipy.fft

from extract.base import Extractor, FeatureArray
from extract.ingest import AUDIO_SAMPLE_RATE_HZ, AudioTrack, DecodedVideo
from extract.registry import register
from features_store.errors import UsageError
from features_store.schema import ArraySchema, column_names

AUDIO_VALID_WINDOW_S = 0.025
"""A frame's audio is valid when the 25 ms window centred on its time overlaps the decoded audio."""

_BLOCK_SAMPLES = 1 << 22  # bounds the memory of one FFT block (about 16 MB of float32 frames)


@lru_cache(maxsize=16)
def _mel_basis(sample_rate_hz: int, n_fft: int, n_mels: int) -> np.ndarray:
    return librosa.filters.mel(sr=sample_rate_hz, n_fft=n_fft, n_mels=n_mels).astype(np.float32)


@lru_cache(maxsize=16)
def _hann(window_samples: int) -> np.ndarray:
    return np.hanning(window_samples + 1)[:-1].astype(np.float32)  # periodic Hann, as librosa's fftbins=True


def log_mel_at(audio: AudioTrack, centre_time_s: np.ndarray, window_samples: int, n_fft: int,
               n_mels: int) -> np.ndarray:
    """Log-Mel power spectra (dB) of Hann windows centred at ``centre_time_s`` (seconds, frame_time clock).

    Returns (len(centre_time_s), n_mels) float32. Parts of a window outside the audio read as zeros.
    """
    sample_rate_hz = audio.sample_rate_hz
    centres = np.rint((np.asarray(centre_time_s) - audio.start_time_s) * sample_rate_hz).astype(np.int64)
    samples = audio.samples.astype(np.float32, copy=False)
    offsets = np.arange(window_samples) - window_samples // 2
    window = _hann(window_samples)
    mel_basis_t = _mel_basis(sample_rate_hz, n_fft, n_mels).T.copy()
    out = np.empty((len(centres), n_mels), dtype=np.float32)
    rows_per_block = max(1, _BLOCK_SAMPLES // n_fft)
    for start in range(0, len(centres), rows_per_block):
        block = centres[start:start + rows_per_block]
        index = block[:, None] + offsets
        outside = (index < 0) | (index >= len(samples))  # parts of a window outside the audio read as zeros
        frames = np.where(outside, 0.0, np.take(samples, index, mode="clip")) * window
        power = np.abs(scipy.fft.rfft(frames, n=n_fft, axis=-1)) ** 2
        out[start:start + len(block)] = power @ mel_basis_t
    return librosa.power_to_db(out, ref=1.0, amin=1e-10, top_db=None).astype(np.float32, copy=False)


def timeline_audio(video: DecodedVideo) -> AudioTrack:
    """The video's audio, or digital silence spanning its frames when it has none (rows are zeroed later)."""
    if video.audio is not None:
        return video.audio
    n_samples = int(np.ceil(video.duration_s * AUDIO_SAMPLE_RATE_HZ))
    return AudioTrack(np.zeros(n_samples, np.float32), AUDIO_SAMPLE_RATE_HZ, float(video.frame_time[0]), 0, 0)


def audio_covered(audio: AudioTrack | None, time_s: np.ndarray, half_window_s: float) -> np.ndarray:
    """Bool per time: the window ``time_s +/- half_window_s`` overlaps decoded audio (not only a filled gap)."""
    if audio is None:
        return np.zeros(len(time_s), dtype=bool)
    covered = (time_s + half_window_s > audio.start_time_s) & (time_s - half_window_s < audio.end_time_s)
    for gap_start_s, gap_end_s in audio.gaps_s:
        covered &= ~((time_s - half_window_s >= gap_start_s) & (time_s + half_window_s <= gap_end_s))
    return covered


def audio_valid_mask(video: DecodedVideo) -> np.ndarray:
    """(T,) bool: True where the 25 ms window centred on the frame time overlaps decoded audio."""
    return audio_covered(video.audio, video.frame_time, AUDIO_VALID_WINDOW_S / 2)


def stack_context(rows: np.ndarray, context_frames: int) -> np.ndarray:
    """(T, D) -> (T, (2k+1) D): frames t-k..t+k side by side; at the ends the nearest frame is repeated."""
    n = len(rows)
    neighbours = np.clip(np.arange(n)[:, None] + np.arange(-context_frames, context_frames + 1), 0, n - 1)
    return rows[neighbours].reshape(n, -1)


DB_UNITS = "dB, 10*log10(power), amin 1e-10"


class AudioExtractor(Extractor):
    """Common ground of the audio features: libraries in the provenance, the ``audio_valid`` mask, and a sample rate
    that is the decoded one (``sample_rate_hz`` is recorded in the parameters; another value is refused)."""

    libraries = ("numpy", "scipy", "librosa", "av")

    def __init__(self, config=None, models_dir=None):
        super().__init__(config, models_dir)
        rate_hz = getattr(self.config, "sample_rate_hz", AUDIO_SAMPLE_RATE_HZ)
        if rate_hz != AUDIO_SAMPLE_RATE_HZ:
            raise UsageError(f"{self.name}.sample_rate_hz={rate_hz}: audio is decoded at {AUDIO_SAMPLE_RATE_HZ} Hz, "
                             "and every window is computed at that rate")

    def validity(self, video: DecodedVideo) -> dict[str, FeatureArray]:
        return {"audio_valid": FeatureArray(audio_valid_mask(video), ArraySchema(
            kind="validity",
            description="True where the 25 ms window centred on the frame time overlaps the decoded audio"),
            {"window_s": AUDIO_VALID_WINDOW_S})}

    @staticmethod
    def zero_invalid(rows: np.ndarray, video: DecodedVideo) -> np.ndarray:
        """``rows`` (T, D) with the rows of frames without audio set to zeros (in place)."""
        rows[~audio_valid_mask(video)] = 0
        return rows

    def frame_feature(self, rows: np.ndarray, video: DecodedVideo, schema: ArraySchema,
                      attrs: dict) -> dict[str, FeatureArray]:
        """This extractor's per-frame array: invalid rows zeroed, tied to ``audio_valid`` (windows centred on the
        frame time unless ``attrs`` says otherwise)."""
        return {self.name: FeatureArray(self.zero_invalid(rows, video), dataclasses.replace(
            schema, validity="audio_valid"), {"window_placement": "centred on frame_time", **attrs})}


@dataclass(frozen=True)
class LogMelConfig:
    """M3T: 40-band log-Mel of a 25 ms window centred on each frame time, +/- ``context_frames`` stacked."""

    n_mels: int = 40
    window_s: float = 0.025
    n_fft: int = 512
    context_frames: int = 2
    sample_rate_hz: int = AUDIO_SAMPLE_RATE_HZ


@register
class LogMel(AudioExtractor):
    """``logmel`` (T, 200): five 40-band dB blocks, frames t-2, t-1, t, t+1, t+2 (ends repeat the edge frame)."""

    name = "logmel"
    version = "1"
    config_class = LogMelConfig

    def extract(self, video: DecodedVideo, inputs=None) -> dict[str, FeatureArray]:
        c = self.config
        window_samples = round(c.window_s * c.sample_rate_hz)
        per_frame = log_mel_at(timeline_audio(video), video.frame_time, window_samples, c.n_fft, c.n_mels)
        stacked = stack_context(self.zero_invalid(per_frame, video), c.context_frames)
        offsets = [f"t{k:+d}" if k else "t" for k in range(-c.context_frames, c.context_frames + 1)]
        return self.frame_feature(stacked, video, ArraySchema(
            units=DB_UNITS, columns=tuple(f"{offset}_{band}" for offset in offsets
                                          for band in column_names("mel", c.n_mels)),
            description=f"{len(offsets)} blocks of {c.n_mels} log-Mel bands, one block per frame {offsets}"), {
            "column_blocks": offsets,
            "block_size": c.n_mels,
            "edge_frames": "nearest frame repeated",
        })


@dataclass(frozen=True)
class MfccMelConfig:
    """Seed 002: per frame, one segment ``segment_frames`` frame intervals long centred on the frame time (so
    consecutive segments overlap by half); MFCC 40 and log-Mel 128 of that segment."""

    n_mfcc: int = 40
    n_mels: int = 128
    segment_frames: float = 2.0
    sample_rate_hz: int = AUDIO_SAMPLE_RATE_HZ


@register
class MfccMel(AudioExtractor):
    """``mfcc_mel`` (T, 168): MFCC 40 (librosa, DCT-II ortho of the dB Mel) then log-Mel 128 (dB)."""

    name = "mfcc_mel"
    version = "1"
    config_class = MfccMelConfig

    def extract(self, video: DecodedVideo, inputs=None) -> dict[str, FeatureArray]:
        c = self.config
        window_samples = max(2, round(c.segment_frames * video.frame_interval_s * c.sample_rate_hz))
        n_fft = 1 << (window_samples - 1).bit_length()
        mel_db = log_mel_at(timeline_audio(video), video.frame_time, window_samples, n_fft, c.n_mels)
        mfcc = librosa.feature.mfcc(S=mel_db.T, n_mfcc=c.n_mfcc).T
        rows = np.concatenate([mfcc, mel_db], axis=1).astype(np.float32)
        return self.frame_feature(rows, video, ArraySchema(
            columns=column_names("mfcc", c.n_mfcc) + column_names("mel", c.n_mels),
            description=f"MFCC {c.n_mfcc} (columns 0..{c.n_mfcc - 1}) then log-Mel {c.n_mels} in dB "
                        f"(columns {c.n_mfcc}..{c.n_mfcc + c.n_mels - 1})"), {
            "column_blocks": ["mfcc", "log_mel"],
            "block_sizes": [c.n_mfcc, c.n_mels],
            "window_s": window_samples / c.sample_rate_hz,
            "n_fft": n_fft,
        })


@dataclass(frozen=True)
class Mel64Config:
    """TSAV: 64-band log-Mel, 20 ms window, 10 ms hop, n_fft 1024, kept at its own 100 Hz time axis."""

    n_mels: int = 64
    window_s: float = 0.020
    hop_s: float = 0.010
    n_fft: int = 1024
    sample_rate_hz: int = AUDIO_SAMPLE_RATE_HZ


@register
class Mel64(AudioExtractor):
    """``mel64`` (R, 64) at 100 Hz, ``mel64_time`` (R,) seconds on the frame_time clock, ``mel64_row`` (T,) the row
    nearest each frame, so a sub-spectrogram around any frame can be cut at training time. The rows span both the
    audio and the frames; ``mel64_valid`` (R,) flags the rows with audio (the others are zeros)."""

    name = "mel64"
    version = "1"
    config_class = Mel64Config

    def extract(self, video: DecodedVideo, inputs=None) -> dict[str, FeatureArray]:
        c = self.config
        audio = timeline_audio(video)
        hop_s = round(c.hop_s * c.sample_rate_hz) / c.sample_rate_hz
        # rows on the audio's 10 ms grid, extended to span every frame too (rows without audio are zeros)
        first = min(float(video.frame_time[0]), audio.start_time_s) - audio.start_time_s
        last = max(float(video.frame_time[-1]), audio.end_time_s) - audio.start_time_s
        row_time = audio.start_time_s + np.arange(np.floor(first / hop_s), np.ceil(last / hop_s) + 1) * hop_s
        row_valid = audio_covered(video.audio, row_time, c.window_s / 2)
        mel = log_mel_at(audio, row_time, round(c.window_s * c.sample_rate_hz), c.n_fft, c.n_mels)
        mel[~row_valid] = 0
        row_of_frame = np.rint((video.frame_time - row_time[0]) / hop_s).astype(np.int32)
        name, clock, validity = self.name, f"{self.name}_time", f"{self.name}_valid"
        return {
            name: FeatureArray(mel, ArraySchema(
                clock=clock, units=DB_UNITS, columns=column_names("mel", c.n_mels), validity=validity,
                description=f"{c.n_mels} log-Mel bands at {1 / hop_s:g} Hz"),
                {"rate_hz": 1 / hop_s, "window_placement": f"centred on {clock}"}),
            clock: FeatureArray(row_time, ArraySchema(
                kind="time", clock=clock, units="s", description=f"time of each {name} row on the frame_time clock")),
            validity: FeatureArray(row_valid, ArraySchema(
                kind="validity", clock=clock, description=f"True where the row's {c.window_s * 1000:g} ms window "
                                                          "overlaps decoded audio; other rows are zeros")),
            f"{name}_row": FeatureArray(row_of_frame, ArraySchema(
                kind="index", indexes=name, description=f"index of the {name} row nearest each frame")),
        }


@dataclass(frozen=True)
class Mel64FineConfig(Mel64Config):
    """Seed 001 (Sec. 4.2): 64 Mel bands, 10 ms window, 5 ms stride (200 Hz), for its TDNN; n_fft 400, TorchAudio's
    MelSpectrogram default, which the paper used."""

    window_s: float = 0.010
    hop_s: float = 0.005
    n_fft: int = 400


@register
class Mel64Fine(Mel64):
    """``mel64_fine`` (R, 64) at 200 Hz with ``mel64_fine_time``, ``mel64_fine_valid`` and ``mel64_fine_row``, laid out
    as ``mel64``'s arrays are."""

    name = "mel64_fine"
    version = "1"
    config_class = Mel64FineConfig

"""Speech regions: where in the audio someone speaks, the unit every recogniser decodes on its own.

Decoding a whole track (or 30 s of it) at once lets Whisper loop over, or skip, similar utterances that share a
window: six takes of one sentence came back as 149 words, or 14, and changed with the thread count. Each region is
therefore decoded alone, so an utterance can neither repeat into its neighbours nor vanish between them.

Regions come from the Silero VAD that ships in faster-whisper (``get_speech_timestamps``), split where a pause lasts
at least ``min_silence_ms``, padded by ``speech_pad_ms`` into the silence around them, and never longer than
``max_region_s`` (longer speech is cut at its quietest point, as the VAD does). Without VAD the audio is cut into
consecutive regions of ``max_region_s``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from extract.ingest import AUDIO_SAMPLE_RATE_HZ


@dataclass(frozen=True)
class SpeechRegion:
    """A stretch of audio decoded as one unit: start and end in seconds from the first sample."""

    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def samples(self, audio: np.ndarray) -> np.ndarray:
        """The region's part of 16 kHz ``audio``."""
        return audio[int(round(self.start_s * AUDIO_SAMPLE_RATE_HZ)):int(round(self.end_s * AUDIO_SAMPLE_RATE_HZ))]


@dataclass(frozen=True)
class RegionSettings:
    """How the audio is cut into regions (recorded in the ``words`` provenance).

    ``vad``: find speech with Silero VAD (else fixed windows of ``max_region_s``); ``threshold``: its speech
    probability threshold; ``min_silence_ms``: the shortest pause that ends a region; ``speech_pad_ms``: padding into
    the surrounding silence; ``max_region_s``: the longest region.
    """

    vad: bool = True
    threshold: float = 0.5
    min_silence_ms: int = 160
    speech_pad_ms: int = 400
    max_region_s: float = 28.0


def speech_regions(samples: np.ndarray, settings: RegionSettings = RegionSettings()) -> list[SpeechRegion]:
    """The regions of 16 kHz mono ``samples`` to decode, in time order, seconds from ``samples[0]``."""
    duration_s = len(samples) / AUDIO_SAMPLE_RATE_HZ
    if not len(samples):
        return []
    if not settings.vad:
        n_regions = math.ceil(duration_s / settings.max_region_s)
        return [SpeechRegion(k * settings.max_region_s, min((k + 1) * settings.max_region_s, duration_s))
                for k in range(n_regions)]
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(threshold=settings.threshold, min_silence_duration_ms=settings.min_silence_ms,
                         speech_pad_ms=settings.speech_pad_ms, max_speech_duration_s=settings.max_region_s)
    found = get_speech_timestamps(np.ascontiguousarray(samples, dtype=np.float32), options)
    return [SpeechRegion(span["start"] / AUDIO_SAMPLE_RATE_HZ, span["end"] / AUDIO_SAMPLE_RATE_HZ) for span in found]

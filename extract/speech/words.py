"""``words``: what is said and when, on the frame clock.

The recogniser (:mod:`extract.speech.asr`) transcribes the video's 16 kHz audio; the forced aligner
(:mod:`extract.speech.align`) times each word. Stored per video:

- group attribute ``words``: a list of ``{"text", "start", "end", "conf"}`` (seconds on the ``frame_time`` clock,
  confidence 0..1 from the recogniser), plus ``segment`` (the speech region the word was decoded in, BERT's
  context), ``timing`` (``"aligned"``, or ``"asr"`` where the recogniser's own times were kept) and ``decoding``
  (``"decoded"``, ``"retried"`` after a first decoding that looked like a loop, or ``"dropped_loop"`` where the
  words from a loop's start on were dropped);
- ``word_index`` (T,) int32: the word spanning ``frame_time[i]`` (``start <= t < end``), -1 where none;
- ``word_valid`` (T,) bool: ``word_index >= 0``.

Words are sorted and never overlap (a word's end is cut at the next word's start), so each frame has at most one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from extract.base import Extractor, FeatureArray, VideoAttribute
from extract.ingest import DecodedVideo
from extract.registry import register
from extract.speech.align import POCKETSPHINX_EN_US, ForcedAligner
from extract.speech.asr import Transcriber, WhisperSettings, transcriber
from extract.speech.loops import LoopCheck
from extract.speech.regions import RegionSettings
from extract.speech.transcript import Segment
from features_store.schema import ArraySchema

WORDS_ATTRIBUTE = "words"


@dataclass(frozen=True)
class WordsConfig:
    """Recogniser (``asr``: whisper or vosk; ``asr_model``: a model folder path or name, None for the default), how
    the audio is cut into speech regions (:class:`~extract.speech.regions.RegionSettings`; ``vad_filter`` false:
    fixed windows), Whisper's decoding and loop test (:class:`~extract.speech.asr.WhisperSettings`,
    :class:`~extract.speech.loops.LoopCheck`), and whether words are re-timed by forced alignment (English)."""

    asr: str = "whisper"
    asr_model: str | None = None
    language: str = WhisperSettings.language
    beam_size: int = WhisperSettings.beam_size
    retry_beam_size: int = WhisperSettings.retry_beam_size
    context_s: float = WhisperSettings.context_s
    condition_on_previous_region: bool = WhisperSettings.condition_on_previous_region
    vad_filter: bool = RegionSettings.vad
    vad_threshold: float = RegionSettings.threshold
    min_silence_ms: int = RegionSettings.min_silence_ms
    speech_pad_ms: int = RegionSettings.speech_pad_ms
    max_region_s: float = RegionSettings.max_region_s
    loop_ngram: int = LoopCheck.ngram
    max_words_per_s: float = LoopCheck.max_words_per_s
    max_compression_ratio: float = LoopCheck.max_compression_ratio
    align: bool = True

    def regions(self) -> RegionSettings:
        return RegionSettings(self.vad_filter, self.vad_threshold, self.min_silence_ms, self.speech_pad_ms,
                              self.max_region_s)

    def loop_check(self) -> LoopCheck:
        return LoopCheck(self.loop_ngram, self.max_words_per_s, self.max_compression_ratio)

    def whisper(self) -> WhisperSettings:
        return WhisperSettings(self.language, self.beam_size, self.retry_beam_size, self.context_s,
                               self.condition_on_previous_region)


def timed_words(segments: list[Segment], aligned: list[list | None], start_time_s: float) -> list[dict[str, Any]]:
    """The ``words`` attribute: one dict per word, aligned times where there are some, on the frame clock, sorted
    and without overlaps."""
    words = []
    for index, (segment, spans) in enumerate(zip(segments, aligned)):
        for k, word in enumerate(segment.words):
            start_s, end_s = (spans[k].start_s, spans[k].end_s) if spans else (word.start_s, word.end_s)
            words.append({"text": word.text, "start": round(start_time_s + start_s, 4),
                          "end": round(start_time_s + end_s, 4), "conf": round(word.conf, 4),
                          "segment": index, "timing": "aligned" if spans else "asr", "decoding": segment.decoding})
    words.sort(key=lambda w: w["start"])
    for word, following in zip(words, words[1:]):
        word["end"] = min(word["end"], following["start"])
    for word in words:
        word["end"] = max(word["end"], word["start"])
    return words


def frame_word_index(words: list[dict[str, Any]], frame_time: np.ndarray) -> np.ndarray:
    """(T,) int32: the index of the word with ``start <= frame_time[i] < end``, -1 where no word spans the frame."""
    if not words:
        return np.full(len(frame_time), -1, dtype=np.int32)
    starts = np.array([w["start"] for w in words])
    ends = np.array([w["end"] for w in words])
    index = np.searchsorted(starts, frame_time, side="right") - 1
    inside = (index >= 0) & (frame_time < ends[np.clip(index, 0, None)])
    return np.where(inside, index, -1).astype(np.int32)


@register
class Words(Extractor):
    """Speech recognition + forced alignment -> the ``words`` attribute, ``word_index`` and ``word_valid``."""

    name = "words"
    version = "2"
    config_class = WordsConfig
    video_attributes = (WORDS_ATTRIBUTE,)
    primary_array = "word_index"

    @cached_property
    def transcriber(self) -> Transcriber:
        c = self.config
        whisper = {"loop_check": c.loop_check(), "settings": c.whisper()} if c.asr == "whisper" else {}
        return transcriber(c.asr, c.asr_model, self.models_search_path, c.regions(), **whisper)

    @cached_property
    def aligner(self) -> ForcedAligner | None:
        return ForcedAligner() if self.config.align else None

    def weights(self) -> dict:
        bundles = {"asr": self.transcriber.weights()}
        if self.config.align:
            bundles["aligner"] = POCKETSPHINX_EN_US
        return bundles

    def parameters(self) -> dict[str, Any]:
        return {**super().parameters(), "asr_settings": self.transcriber.parameters()}

    @property
    def libraries(self) -> tuple[str, ...]:
        return ("numpy", "av", *self.transcriber.libraries, *(("pocketsphinx", "num2words") if self.aligner else ()))

    def recognise(self, samples: np.ndarray, start_time_s: float = 0.0) -> list[dict[str, Any]]:
        """The ``words`` list for 16 kHz mono ``samples`` whose first sample is at ``start_time_s``."""
        segments = self.transcriber.transcribe(samples) if len(samples) else []
        aligned = self.aligner.align(samples, segments) if self.aligner else [None] * len(segments)
        return timed_words(segments, aligned, start_time_s)

    def extract(self, video: DecodedVideo, inputs=None) -> dict[str, FeatureArray | VideoAttribute]:
        words = self.recognise(video.audio.samples, video.audio.start_time_s) if video.audio is not None else []
        word_index = frame_word_index(words, video.frame_time)
        return {
            "word_index": FeatureArray(word_index, ArraySchema(
                kind="index", indexes_attribute=WORDS_ATTRIBUTE,
                description="index into the group attribute 'words' of the word spanning the frame time "
                            "(start <= frame_time < end); -1 where no word does")),
            "word_valid": FeatureArray(word_index >= 0, ArraySchema(
                kind="validity", description="True where a recognised word spans the frame time (word_index >= 0)")),
            WORDS_ATTRIBUTE: VideoAttribute(words),
        }


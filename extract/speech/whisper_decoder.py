"""One Whisper decoding of one speech region, at a chosen encoder window, beam and prompt.

faster-whisper's ``transcribe`` always encodes 30 s windows and, on trouble, falls back to sampling at higher
temperatures (random, so runs differ). Regions are decoded here instead, from the same model and its own pieces
(feature extractor, CTranslate2 ``encode``/``generate``, prompt layout, cross-attention word alignment), with:

- an encoder window of ``context_s`` (the region, then silence): 10 s costs a quarter of Whisper's 30 s on CPU.
  Much shorter windows made tiny.en loop (measured: a region plus 1 s of silence looped on 4 of 13 clips);
- deterministic search only (greedy or beam, temperature 0), so the same audio gives the same words on every run;
- a token budget from the region's length, so a loop ends early instead of running to 448 tokens.

Word times come from the alignment of the decoder's cross-attention with the region's audio frames (faster-whisper's
``find_alignment``), in seconds from the region's first sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from extract.speech.transcript import TimedWord

WHISPER_WINDOW_S = 30.0
"""The encoder window Whisper was trained on."""
FEATURE_FRAMES_PER_S = 100
"""Whisper's log-Mel frames: 10 ms hop."""
_PREPEND_PUNCTUATION = "\"'“¿([{-"
_APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"


@dataclass(frozen=True)
class Decoded:
    """What one decoding gave: its text tokens (the next region's prompt), timed words, and whether it stopped at
    the token budget instead of ending the text."""

    tokens: tuple[int, ...]
    words: tuple[TimedWord, ...]
    hit_token_budget: bool


class WhisperDecoder:
    """Decodes single regions with a faster-whisper ``WhisperModel`` (loaded by the caller)."""

    def __init__(self, model, language: str):
        from faster_whisper.tokenizer import Tokenizer

        self.model = model
        self.tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe",
                                   language=language)

    @cached_property
    def _suppressed_tokens(self) -> tuple[int, ...]:
        from faster_whisper.transcribe import get_suppressed_tokens

        return get_suppressed_tokens(self.tokenizer, [-1])  # Whisper's default: non-speech symbols

    def decode(self, samples: np.ndarray, context_s: float, beam_size: int, prompt_tokens: tuple[int, ...],
               max_new_tokens: int) -> Decoded:
        """Decode 16 kHz ``samples`` (one region, shorter than 30 s) in an encoder window of at least ``context_s``
        seconds (the region plus 1 s of silence when that is longer), after ``prompt_tokens`` (the previous region's
        text, or none)."""
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.transcribe import merge_punctuations

        features = self.model.feature_extractor(np.ascontiguousarray(samples, dtype=np.float32))[..., :-1]
        content_frames = features.shape[-1]
        window_frames = min(int(WHISPER_WINDOW_S * FEATURE_FRAMES_PER_S), max(
            int(round(context_s * FEATURE_FRAMES_PER_S)),
            math.ceil(content_frames / FEATURE_FRAMES_PER_S + 1) * FEATURE_FRAMES_PER_S))
        encoded = self.model.encode(pad_or_trim(features, window_frames)[None])
        prompt = self.model.get_prompt(self.tokenizer, list(prompt_tokens))  # with timestamps: fewer loops here
        result = self.model.model.generate(
            encoded, [prompt], beam_size=beam_size, max_length=min(len(prompt) + max_new_tokens,
                                                                   self.model.max_length),
            suppress_blank=True, suppress_tokens=list(self._suppressed_tokens))[0]
        generated = result.sequences_ids[0]
        text_tokens = [token for token in generated if token < self.tokenizer.eot]
        hit_budget = len(generated) >= max_new_tokens  # the end token is not returned: a text that ended is shorter
        if not text_tokens:
            return Decoded((), (), hit_budget)
        alignment = self.model.find_alignment(self.tokenizer, [text_tokens], encoded, min(content_frames,
                                                                                          window_frames))[0]
        merge_punctuations(alignment, _PREPEND_PUNCTUATION, _APPEND_PUNCTUATION)
        words = tuple(TimedWord(w["word"].strip(), float(w["start"]), float(w["end"]), float(w["probability"]))
                      for w in alignment if w["word"].strip())
        return Decoded(tuple(text_tokens), words, hit_budget)

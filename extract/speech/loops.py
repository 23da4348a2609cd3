"""Spotting a recogniser that loops: the same words again and again, faster than anyone speaks.

Whisper, small models above all, can repeat a phrase until its token budget runs out ("don't forget a jacket" over a
whole video), or copy the text it was prompted with. A region's decoded words are suspect when

- a run of ``ngram`` words occurs twice inside the one region (``repeated_ngram``),
- there are more than ``max_words_per_s`` words per second of the region (``words_per_s``),
- the text compresses better than ``max_compression_ratio`` with zlib, Whisper's own hallucination test
  (``compression_ratio``),
- or decoding stopped at its token budget instead of ending the text (``token_limit``).

The recogniser decodes a suspect region again with other settings; what still loops is cut at the loop
(:meth:`LoopCheck.looping_from`).
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

_NOT_A_WORD_CHARACTER = re.compile(r"[^\w']+")


def _normalised(words: Sequence[str]) -> list[str]:
    return [_NOT_A_WORD_CHARACTER.sub("", word.lower()) for word in words]


def compression_ratio(text: str) -> float:
    """Length of ``text`` in UTF-8 bytes over its zlib-compressed length (Whisper's measure of repetition)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


@dataclass(frozen=True)
class LoopCheck:
    """Thresholds of the loop test (recorded in the ``words`` provenance)."""

    ngram: int = 3
    max_words_per_s: float = 6.0
    max_compression_ratio: float = 2.4

    def token_budget(self, duration_s: float) -> int:
        """Tokens a region of ``duration_s`` may decode to: three per word at ``max_words_per_s``, plus 16 (sub-word
        pieces, punctuation and timestamps); a loop stops there instead of at the model's 448."""
        return 16 + math.ceil(3 * self.max_words_per_s * duration_s)

    def problem(self, words: Sequence[str], duration_s: float, hit_token_budget: bool = False) -> str | None:
        """Why the ``words`` decoded from a region of ``duration_s`` seconds look like a loop, or None."""
        if hit_token_budget:
            return "token_limit"
        if self._repeat_start(words) is not None:
            return "repeated_ngram"
        if len(words) > self.max_words_per_s * max(duration_s, 1.0):
            return "words_per_s"
        if compression_ratio(" ".join(words)) > self.max_compression_ratio:
            return "compression_ratio"
        return None

    def looping_from(self, words: Sequence[str], duration_s: float) -> int:
        """How many of ``words`` to keep: those before a repeated run of ``ngram`` words starts again, and never
        more than ``max_words_per_s`` per second of the region."""
        repeat = self._repeat_start(words)
        keep = len(words) if repeat is None else repeat
        return min(keep, math.floor(self.max_words_per_s * max(duration_s, 1.0)))

    def _repeat_start(self, words: Sequence[str]) -> int | None:
        """Index where a run of ``ngram`` words seen before starts again, or None."""
        tokens = _normalised(words)
        seen: set[tuple[str, ...]] = set()
        for start in range(len(tokens) - self.ngram + 1):
            run = tuple(tokens[start:start + self.ngram])
            if run in seen:
                return start
            seen.add(run)
        return None

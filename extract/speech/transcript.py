"""What a recogniser returns: segments (one per decoded speech region) of timed words."""

from __future__ import annotations

from dataclasses import dataclass

DECODINGS = ("decoded", "retried", "dropped_loop")
"""What was done to a segment: decoded once; decoded again because the first words looked like a loop; or still
looping after that, so the words from where the loop starts were dropped."""


@dataclass(frozen=True)
class TimedWord:
    """A recognised word: its text as the recogniser wrote it, start and end in seconds, confidence 0..1."""

    text: str
    start_s: float
    end_s: float
    conf: float


@dataclass(frozen=True)
class Segment:
    """A stretch of speech the recogniser decoded as one unit (one speech region), with what was done to it
    (one of :data:`DECODINGS`)."""

    start_s: float
    end_s: float
    words: tuple[TimedWord, ...]
    decoding: str = "decoded"

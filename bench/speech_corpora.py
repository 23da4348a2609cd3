"""The real speech the tests and benchmarks score recognition on, and how they score it.

``../shared/media`` (or ``$AFFECTSYNC_SHARED/media``) holds six GRID clips with their transcripts and three LibriVox
utterances with theirs; it is absent on a user's machine, so callers check :data:`SHARED_MEDIA` first. Word error
rates are computed after Whisper's own English normaliser on both sides (case, punctuation, "two" == "2").
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_MEDIA = Path(os.environ.get("AFFECTSYNC_SHARED", REPO_ROOT.parent / "shared")) / "media"


@cache
def _normaliser():
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    return EnglishTextNormalizer({})


def normalise(text: str) -> str:
    """``text`` as Whisper's evaluation sees it: lower case, no punctuation, numbers as digits."""
    return _normaliser()(text)


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER (errors over all reference words), both sides normalised the way Whisper is evaluated."""
    import jiwer

    return jiwer.wer([normalise(r) for r in references], [normalise(h) for h in hypotheses])


def grid_clips(media: Path = SHARED_MEDIA) -> dict[Path, str]:
    """The GRID clips and the sentence spoken in each."""
    lines = (media / "grid" / "transcripts.csv").read_text().splitlines()[1:]
    return {media / "grid" / name: text for name, text in (line.strip().split(",", 1) for line in lines)}


def librivox_utterances(media: Path = SHARED_MEDIA) -> dict[Path, str]:
    """The LibriVox utterances (16 kHz WAV) and their transcripts."""
    return {wav: wav.with_suffix(".txt").read_text() for wav in sorted((media / "librivox").glob("*.wav"))}

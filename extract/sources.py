"""Where the weights users bring are published: URLs, sha256, sizes and licenses, as data.

No model host publishes checksums for these files (Hugging Face's LFS object ids excepted). Each sha256 below is the
one other projects pin for the same URL (found in at least two independent projects' download manifests, and, for
torch.hub-named files, agreeing with the prefix in the name); where none was found it is None, and the sha256 seen at
the first download is pinned in the models folder's ``SHA256SUMS`` (trust on first use). Sizes are the pinned ones.
"""

from __future__ import annotations

from extract.downloads import Download, HubSnapshot

INSIGHTFACE_LICENSE = "insightface pretrained models: non-commercial research use only"
INSIGHTFACE_LICENSE_URL = "https://github.com/deepinsight/insightface/tree/master/python-package"
INSIGHTFACE_RELEASES = "https://github.com/deepinsight/insightface/releases/download/v0.7"
INSIGHTFACE_PACKS = {
    "antelopev2": ("8e182f14fc6e80b3bfa375b33eb6cff7ee05d8ef7633e738d1c89021dcf0c5c5", 360_662_982),
    "buffalo_l": ("80ffe37d8a5940d59a7384c201a2a38d4741f2f3c51eef46ebb28218a7b0ca2f", 288_621_354),
}
INSIGHTFACE_MEMBERS = {
    # member file -> (its pack, its own sha256)
    "glintr100.onnx": ("antelopev2", "4ab1d6435d639628a6f3e5008dd4f929edf4c4124b1a7169e1048f9fef534cdf"),
    "scrfd_10g_bnkps.onnx": ("antelopev2", "5838f7fe053675b1c7a08b633df49e7af5495cee0493c7dcf6697200b85b5b91"),
    "w600k_r50.onnx": ("buffalo_l", "4c06341c33c2ca1f86781dab0e829f88ad5b64be9fba56e56bc9ebdefc619e43"),
    "det_10g.onnx": ("buffalo_l", "5838f7fe053675b1c7a08b633df49e7af5495cee0493c7dcf6697200b85b5b91"),
}


def insightface_member(file_name: str) -> Download | None:
    """The insightface pack holding ``file_name`` (the download is the pack; the member is the file), or None."""
    if file_name not in INSIGHTFACE_MEMBERS:
        return None
    pack = INSIGHTFACE_MEMBERS[file_name][0]
    sha256, size_bytes = INSIGHTFACE_PACKS[pack]
    return Download((f"{INSIGHTFACE_RELEASES}/{pack}.zip",), sha256, size_bytes, member=file_name)


FACENET_VGGFACE2 = Download(
    ("https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",),
    "281cebca8662831adb987a874bdcb36e73f5b1c6dc5ee5878f305e985625d99b", 111_898_327)

HSEMOTION_ENET_B0_8_VA_MTL = Download(
    ("https://raw.githubusercontent.com/sb-ai-lab/EmotiEffLib/main/models/affectnet_emotions/onnx/"
     "enet_b0_8_va_mtl.onnx",
     "https://github.com/HSE-asavchenko/face-emotion-recognition/blob/main/models/affectnet_emotions/onnx/"
     "enet_b0_8_va_mtl.onnx?raw=true"),
    "c43e056ad388d4a8dc911832b8291435b2af537f967e5870ebd731574ec7e812", 16_049_834)

SENET50_FT = Download(
    # The VGGFace2-pytorch author shares it on Google Drive (no direct link); this release of deep_utils re-hosts it.
    ("https://github.com/pooya-mohammadi/deep_utils/releases/download/0.9.5/senet50_ft_weight.pkl",))
SENET50_LICENSE = "VGGFace2 models: research use (see the VGGFace2 terms)"
SENET50_LICENSE_URL = "https://github.com/ox-vgg/vgg_face2"

TORCHVGGISH_RELEASES = "https://github.com/harritaylor/torchvggish/releases/download/v0.1"
VGGISH = Download((f"{TORCHVGGISH_RELEASES}/vggish-10086976.pth",),
                  "10086976245803799d9194e9a73d9b6c1549c71d1b80106f5cade5608a561f4b", 288_567_937)
VGGISH_PCA = Download((f"{TORCHVGGISH_RELEASES}/vggish_pca_params-970ea276.pth",), None, 181_358)

# The trunk networks' pretrained weights (torchvision's releases; the file names carry their sha256 prefixes)
R2PLUS1D_18_KINETICS = Download(("https://download.pytorch.org/models/r2plus1d_18-91a641e6.pth",),
                                "91a641e6c2ab531d1aca5f4321b4d802ec5c3babc15df855cdb6e39c6a1107c8", 126_162_996)
RESNET18_IMAGENET = Download(("https://download.pytorch.org/models/resnet18-f37072fd.pth",),
                             "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec", 46_830_571)
RESNET50_IMAGENET = Download(("https://download.pytorch.org/models/resnet50-11ad3fa6.pth",),
                             "11ad3fa62ca79e40addfd354a8ec4b7c75143b3038b8d2a807fbc68deab379ca", 102_540_417)

VOSK_MODELS = "https://alphacephei.com/vosk/models"
MODEL_FOLDERS: dict[str, Download | HubSnapshot] = {
    "vosk-model-small-en-us-0.15": Download(
        (f"{VOSK_MODELS}/vosk-model-small-en-us-0.15.zip",),
        "30f26242c4eb449f948e42cb302dd7a686cb29a3423a8367f99ff41780942498", 41_205_931,
        member="vosk-model-small-en-us-0.15"),
    "vosk-model-en-us-0.22": Download(
        (f"{VOSK_MODELS}/vosk-model-en-us-0.22.zip",),
        "47f9a81ebb039dbb0bd319175c36ac393c0893b796c2b6303e64cf58c27b69f6", member="vosk-model-en-us-0.22"),
    "faster-whisper-small": HubSnapshot("Systran/faster-whisper-small", "536b0662742c02347bc0e980a01041f333bce120"),
    "bert-base-uncased": HubSnapshot("google-bert/bert-base-uncased", "86b5e0934494bd15c9632b12f734a8a67f723594"),
}
"""Model folders affectsync can fetch by name (``--asr-model``, ``--bert-model``, the Vosk default)."""

PUBLISHED_FILES: dict[str, tuple[Download, str | None]] = {
    **{name: (insightface_member(name), sha256) for name, (_, sha256) in INSIGHTFACE_MEMBERS.items()},
    "20180402-114759-vggface2.pt": (FACENET_VGGFACE2, FACENET_VGGFACE2.sha256),
    "enet_b0_8_va_mtl.onnx": (HSEMOTION_ENET_B0_8_VA_MTL, HSEMOTION_ENET_B0_8_VA_MTL.sha256),
    "senet50_ft_weight.pkl": (SENET50_FT, None),
    "vggish-10086976.pth": (VGGISH, VGGISH.sha256),
    "vggish_pca_params-970ea276.pth": (VGGISH_PCA, None),
    "r2plus1d_18-91a641e6.pth": (R2PLUS1D_18_KINETICS, R2PLUS1D_18_KINETICS.sha256),
    "resnet18-f37072fd.pth": (RESNET18_IMAGENET, RESNET18_IMAGENET.sha256),
    "resnet50-11ad3fa6.pth": (RESNET50_IMAGENET, RESNET50_IMAGENET.sha256),
}
"""Weights files affectsync can fetch by name: where from, and the file's own sha256 (None: not published)."""

TORCHVISION_LICENSE = ("torchvision's pretrained weights: BSD-3-Clause code, weights under the terms of the dataset "
                       "they were trained on (ImageNet-1k, Kinetics-400: research and education)")
TORCHVISION_MODELS = "download.pytorch.org/models (torchvision 0.29's"
TRUNK_WEIGHTS: dict[str, tuple[str, str, str]] = {
    # file -> (the training model and setting that take it, where it comes from, license)
    "r2plus1d_18-91a641e6.pth": ("tsav: --set pretrained_visual=", f"{TORCHVISION_MODELS} R(2+1)D-18, Kinetics-400)",
                                 TORCHVISION_LICENSE),
    "resnet18-f37072fd.pth": ("tsav: --set pretrained_aural=", f"{TORCHVISION_MODELS} ResNet-18, ImageNet-1k)",
                              TORCHVISION_LICENSE),
    "resnet50-11ad3fa6.pth": ("frame_cnn: --set pretrained=", f"{TORCHVISION_MODELS} ResNet-50, ImageNet-1k V2)",
                              TORCHVISION_LICENSE),
    "iresnet100_backbone.pth": ("frame_cnn: --set backbone=iresnet100 --set pretrained=",
                                "insightface arcface_torch IResNet-100 backbone.pth (its model zoo, Glint360K; no "
                                "direct download: save it under this name)", INSIGHTFACE_LICENSE),
}
"""The trunk networks' pretrained weights (``python -m train``, MODEL=tsav / frame_cnn): ``extract models`` lists
them, ``extract models fetch train:tsav`` brings them."""


"""Trunk backbones (train.models.backbones) match torchvision's names and shapes, load pretrained files with a checked
sha256 and a widened first conv; ClipInput crops, flips and normalises clips as documented."""

from __future__ import annotations

import hashlib
import shutil

import pytest
import torch
import torchvision

from train.models.backbones import image_resnet, iresnet, load_pretrained, video_resnet, widen_first_conv
from train.models.clip_input import NORMALIZATIONS, ClipInput

TINY = (4, 8, 16, 32)


pytestmark = pytest.mark.usefixtures("one_thread")


def shapes(module: torch.nn.Module, drop: str = "fc.") -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in module.state_dict().items() if not key.startswith(drop)}


@pytest.mark.parametrize("ours, theirs", [
    (lambda: video_resnet(), torchvision.models.video.r2plus1d_18),
    (lambda: image_resnet(18), torchvision.models.resnet18),
    (lambda: image_resnet(50), torchvision.models.resnet50),
], ids=["r2plus1d_18", "resnet18", "resnet50"])
def test_default_widths_equal_torchvision(ours, theirs):
    with torch.device("meta"):  # names and shapes only: no initialisation, no forward
        mine, reference = ours(), theirs()
    assert list(shapes(mine)) == list(shapes(reference))
    assert shapes(mine) == shapes(reference)


def test_iresnet100_layout():
    with torch.device("meta"):
        net = iresnet(100)
    state = shapes(net, drop="-")
    assert state["conv1.weight"] == (64, 3, 3, 3) and state["fc.weight"] == (512, 512 * 7 * 7)
    assert state["layer3.29.conv2.weight"] == (256, 256, 3, 3) and "layer3.30.bn1.weight" not in state
    assert state["layer1.0.downsample.0.weight"] == (64, 64, 1, 1) and state["features.running_var"] == (512,)
    assert sum(p.numel() for p in net.parameters()) == 65_156_160  # arcface_torch's r100, ~65.2 M


def test_tiny_widths_output_shapes():
    assert video_resnet(TINY, in_channels=4)(torch.randn(2, 4, 8, 28, 28)).shape == (2, 32)
    assert image_resnet(18, TINY, in_channels=1)(torch.randn(2, 1, 21, 64)).shape == (2, 32)
    assert image_resnet(50, TINY)(torch.randn(2, 3, 28, 28)).shape == (2, 128)
    net = iresnet(50, TINY, in_channels=4, embedding=16, input_px=28)
    assert net.fc.in_features == 32 * 2 * 2  # 28 -> 14 -> 7 -> 4 -> 2
    assert net(torch.randn(2, 4, 28, 28)).shape == (2, 16)


def test_widen_first_conv():
    weight = torch.randn(5, 3, 1, 2, 2)
    wide = widen_first_conv({"stem.0.weight": weight, "other": torch.ones(1)}, "stem.0.weight", 4)["stem.0.weight"]
    assert torch.equal(wide[:, :3], weight) and torch.allclose(wide[:, 3], weight.mean(dim=1))
    narrow = widen_first_conv({"conv1.weight": weight}, "conv1.weight", 1)["conv1.weight"]
    assert torch.allclose(narrow[:, 0], weight.sum(dim=1))
    with pytest.raises(ValueError, match="cannot adapt"):
        widen_first_conv({"conv1.weight": weight}, "conv1.weight", 2)


def test_load_pretrained_checks_hash_and_widens(tmp_path):
    source = video_resnet(TINY)  # an RGB "pretrained" net with a classifier, as torchvision saves them
    state = dict(source.state_dict(), **{"fc.weight": torch.randn(400, 32), "fc.bias": torch.randn(400)})
    scratch = tmp_path / "scratch.pth"
    torch.save(state, scratch)
    sha256 = hashlib.sha256(scratch.read_bytes()).hexdigest()
    good = tmp_path / f"r2plus1d_18-{sha256[:8]}.pth"
    shutil.copy(scratch, good)

    target = video_resnet(TINY, in_channels=4)
    assert load_pretrained(target, good, in_channels=4) == sha256
    loaded = target.state_dict()["stem.0.weight"]
    assert torch.equal(loaded[:, :3], state["stem.0.weight"])
    assert torch.allclose(loaded[:, 3], state["stem.0.weight"].mean(dim=1))
    assert torch.equal(target.state_dict()["layer4.1.conv2.0.3.weight"], state["layer4.1.conv2.0.3.weight"])
    assert load_pretrained(video_resnet(TINY), scratch) == sha256  # no hash in the name: nothing to check

    wrong = "0" * 8 if not sha256.startswith("0" * 8) else "1" * 8
    bad = tmp_path / f"r2plus1d_18-{wrong}.pth"
    shutil.copy(scratch, bad)
    with pytest.raises(ValueError, match=f"{bad.name}.*{wrong}.*{sha256}"):
        load_pretrained(video_resnet(TINY, in_channels=4), bad)
    with pytest.raises(ValueError, match="does not fit"):  # other widths: the shapes differ
        load_pretrained(video_resnet((8, 8, 16, 32)), good)


# ----------------------------------------------------------------------------------------------------------------------
# ClipInput
# ----------------------------------------------------------------------------------------------------------------------

def test_clip_input_eval_is_centre_crop():
    clip = torch.randint(0, 256, (2, 3, 16, 16, 4), dtype=torch.uint8)
    net = ClipInput(4, crop_fraction=12 / 16).eval()
    out = net(clip)
    assert out.shape == (2, 4, 3, 12, 12) and out.dtype == torch.float32
    assert torch.equal(out, net(clip))
    mean, std = NORMALIZATIONS["imagenet"]
    n, k, y, x = 1, 2, 5, 7  # output pixel (5, 7) is input pixel (7, 9): offset (16 - 12) // 2 = 2
    pixel = clip[n, k, y + 2, x + 2].float() / 255
    expected = torch.stack([(pixel[c] - mean[c]) / std[c] for c in range(3)] + [pixel[3]])
    assert torch.allclose(out[n, :, k, y, x], expected, atol=1e-6)
    valid = torch.tensor([[True, False, True], [True, True, True]])
    assert torch.all(net(clip, valid)[0, :, 1] == 0) and torch.equal(net(clip, valid)[1], out[1])


def test_clip_input_training_crop_is_one_position_per_clip():
    # every pixel value encodes its position: y * 16 + x; the colour changes are off so values stay exact
    grid = (torch.arange(16)[:, None] * 16 + torch.arange(16)[None, :]).to(torch.uint8)
    clip = grid[None, None, :, :, None].expand(6, 5, 16, 16, 3).clone()
    net = ClipInput(3, crop_fraction=10 / 16, normalization="symmetric", hue=0, saturation=0, lightness=0,
                    flip_probability=0).train()
    out = net(clip, generator=torch.Generator().manual_seed(3))
    values = torch.round((out[:, 0] * 0.5 + 0.5) * 255).long()  # (N, K, s, s)
    assert torch.equal(values, values[:, :1].expand_as(values))  # same crop in all K frames of a clip
    corners = values[:, 0, 0, 0]
    assert len(set(corners.tolist())) > 1  # and clips differ
    top, left = corners // 16, corners % 16
    assert bool(((top <= 6) & (left <= 6)).all())
    assert torch.equal(values[:, 0], torch.stack([grid[y:y + 10, x:x + 10].long() for y, x in zip(top, left)]))


def test_clip_input_flip_flips_the_mask_and_colours_change_rgb_only():
    clip = torch.randint(0, 256, (16, 2, 8, 8, 4), dtype=torch.uint8)
    net = ClipInput(4, crop_fraction=1.0, flip_probability=1.0).train()
    out = net(clip, generator=torch.Generator().manual_seed(0))
    reference = ClipInput(4, crop_fraction=1.0).eval()(clip)
    assert torch.allclose(out[:, 3], reference[:, 3].flip(-1))  # mask: flipped, unchanged otherwise
    assert not torch.allclose(out[:, :3], reference[:, :3].flip(-1))  # RGB: flipped and recoloured
    grey = ClipInput(3, crop_fraction=1.0, hue=0.5, saturation=0, lightness=0, flip_probability=0).train()
    still = torch.full((2, 1, 4, 4, 3), 100, dtype=torch.uint8)  # a hue rotation leaves grey grey
    assert torch.allclose(grey(still), ClipInput(3, crop_fraction=1.0).eval()(still), atol=1e-5)

"""A batch of bad and unusual inputs made here with PyAV: each bad one gives one line naming the file, the video id
and the cause, is listed in the store's root attribute ``failures`` (and by ``features_store info``), and the good
ones in the same batch complete and verify."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from features_store import FeatureStore
from features_store.verify import verify_store
from media_factory import _write_audio, click_track, write_video

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLES = REPO_ROOT / "samples"


def audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=48_000, layout="mono")
        _write_audio(container, stream, click_track(2.0, [0.5], 48_000), 48_000, 0.0, None)
    return path


def non_monotonic(path: Path) -> Path:
    """Frames whose presentation times go back (0.24 s, then 0.22 s): decoding order with shuffled pts."""
    pts_ms = [200, 240, 220, 300, 280, 360]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        packets = []
        for i in range(len(pts_ms)):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 30 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i * 40, Fraction(1, 1000)
            packets += stream.encode(frame)
        packets += stream.encode(None)
        for k, packet in enumerate(packets):
            packet.dts, packet.pts = k * 40, pts_ms[k]
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[list[Path], dict[str, str], list[str]]:
    """(inputs, {bad input: expected video id}, good video ids)."""
    folder = tmp_path_factory.mktemp("corpus")
    audio = click_track(3.0, [0.5, 1.5], 48_000)
    bad = {}
    missing = folder / "missing.mp4"
    bad[missing] = "missing"
    (folder / "zero.mp4").write_bytes(b"")
    bad[folder / "zero.mp4"] = "zero"
    (folder / "random.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    bad[folder / "random.mp4"] = "random"
    (folder / "notes.txt").write_text("frame,valence\n0,0.5\n")
    bad[folder / "notes.txt"] = "notes"
    whole = write_video(folder / "whole.mp4", 60, audio=audio).read_bytes()
    (folder / "half.mp4").write_bytes(whole[: len(whole) // 2])  # the index (moov) was at the end: unreadable
    (folder / "whole.mp4").unlink()
    bad[folder / "half.mp4"] = "half"
    bad[audio_only(folder / "speech.m4a")] = "speech"
    bad[non_monotonic(folder / "backwards.mkv")] = "backwards"
    good = {
        write_video(folder / "no_audio.mp4", 20): "no_audio",
        write_video(folder / "one_frame.mp4", 1, audio=audio[:4800]): "one_frame",
        write_video(folder / "vfr.mkv", 10, frame_pts_ms=[0, 33, 100, 133, 250, 283, 400, 500, 533, 700],
                    audio=audio): "vfr",
        write_video(folder / "late_audio.mp4", 30, audio=audio, audio_start_s=0.4): "late_audio",
        write_video(folder / "early_audio.mkv", 30, frame_pts_ms=[500 + 40 * i for i in range(30)],
                    audio=audio): "early_audio",
        write_video(folder / "uhd.mp4", 2, size=(3840, 2160)): "uhd",
        write_video(folder / "vidéo d'été 1.mp4", 15, audio=audio): "vid_o_d_t_1",  # ids keep [A-Za-z0-9._-]
    }
    (folder / "sub").mkdir()
    dotted = write_video(folder / "dotted.mp4", 12, audio=audio)
    good[folder / "sub" / ".." / dotted.name] = "dotted"  # a name with ../ in it
    return [*bad, *good], {str(path): video_id for path, video_id in bad.items()}, sorted(good.values())


def test_bad_inputs_fail_alone_with_one_line_each(corpus, tmp_path):
    inputs, bad, good = corpus
    store = tmp_path / "s.zarr"
    result = subprocess.run([sys.executable, "-m", "extract", *map(str, inputs), "--store", str(store),
                             "--features", "logmel,face_crop", "--no-progress"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("FAILED")]
    assert len(lines) == len(bad), lines
    for source, video_id in bad.items():
        (line,) = [line for line in lines if line.startswith(f"FAILED {source} ")]
        assert f"(video {video_id}): " in line and len(line.split("): ", 1)[1]) > 5, line
    reasons = {source: line.split("): ", 1)[1] for source in bad for line in lines if source in line}
    assert reasons[next(s for s in bad if s.endswith("missing.mp4"))] == "no such file"
    assert "timestamps do not increase" in reasons[next(s for s in bad if s.endswith("backwards.mkv"))]
    assert "no video stream" in reasons[next(s for s in bad if s.endswith("speech.m4a"))]

    opened = FeatureStore(str(store))
    assert opened.video_ids() == good and all(opened.video(v).complete for v in good)
    assert verify_store(opened) == {}
    assert {(f["source"], f["video_id"]) for f in opened.failures()} == set(bad.items())
    assert opened.video("uhd").attrs["width"] == 3840 and opened.video("one_frame").n_frames == 1
    assert opened.video("early_audio").attrs["audio_offset_s"] == pytest.approx(-0.5, abs=0.03)
    assert opened.video("late_audio").attrs["audio_offset_s"] == pytest.approx(0.4, abs=0.03)
    assert not opened.video("no_audio").read("audio_valid").any()

    info = subprocess.run([sys.executable, "-m", "features_store", "info", str(store)], cwd=REPO_ROOT,
                          capture_output=True, text=True)
    assert f"{len(good)} complete, {len(bad)} failed" in info.stdout
    assert "FAILED missing (" in info.stdout
    as_json = json.loads(subprocess.run([sys.executable, "-m", "features_store", "info", str(store), "--json"],
                                        cwd=REPO_ROOT, capture_output=True, text=True).stdout)
    assert len(as_json["failures"]) == len(bad)


def test_a_fixed_input_leaves_the_failures_list(tmp_path):
    from extract.run import run_extraction

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    store = str(tmp_path / "s.zarr")
    report = run_extraction([clip], store, ["logmel"], progress=False)
    assert report.failures == [{"video_id": "clip", "source": str(clip), "reason": report.failed[str(clip)]}]
    assert [f["video_id"] for f in FeatureStore(store).failures()] == ["clip"]
    write_video(clip, 10, audio=click_track(1.0, [0.2], 48_000))
    assert run_extraction([clip], store, ["logmel"], progress=False).extracted == ["clip"]
    assert FeatureStore(store).failures() == []

"""A store consumer's install: a fresh virtualenv with affectsync's core dependencies only (no extras: zarr, numpy,
dask, fsspec from the package registry) opens, verifies, lists and reads the sample store, torch and the
extractors nowhere in sight; with the ``eval`` extra (scipy, matplotlib), ``python -m eval`` scores prediction CSVs,
still without torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import venv
from pathlib import Path

import numpy as np

from eval.labels import fit_to_frames, load_labels

REPO_ROOT = Path(__file__).resolve().parents[1]
LABELS = REPO_ROOT / "samples" / "crema_d_1001_DFA_concat_labels.csv"


def test_core_install_reads_a_store(sample_store, tmp_path):
    source = tmp_path / "affectsync"  # a copy: pip builds in the source tree, and the checkout stays clean
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    for package in ("extract", "features_store", "train", "eval"):
        shutil.copytree(REPO_ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    env_dir = tmp_path / "consumer"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              str(source)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-3000:]
    check_reads_the_store(python, sample_store, tmp_path)
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              f"{source}[eval]"], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-3000:]
    check_scores_predictions(python, sample_store, tmp_path)


def check_reads_the_store(python: Path, sample_store, tmp_path: Path) -> None:
    script = f"""
import importlib.util, sys
import features_store
from features_store.verify import verify_store
store = features_store.open({sample_store.location!r})
assert verify_store(store) == {{}}, verify_store(store)
assert store.video_ids() == ["crema_d_1001_DFA_concat", "grid_id2_vcd_swwp2s"]
total = store.dask("logmel").sum().compute()
print("SHAPE", store.dask("logmel").shape)
print("TOTAL", float(total))
print("ABSENT", [m for m in ("torch", "av", "librosa", "transformers") if importlib.util.find_spec(m)])
"""
    result = subprocess.run([str(python), "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ABSENT []" in result.stdout  # the consumer's environment has none of the extraction stack
    expected = sum(float(sample_store.video(v).read("logmel").astype("float64").sum())
                   for v in sample_store.video_ids())
    total = float(next(line for line in result.stdout.splitlines() if line.startswith("TOTAL")).split()[1])
    assert abs(total - expected) <= 1e-3 * abs(expected)


def check_scores_predictions(python: Path, sample_store, tmp_path: Path) -> None:
    """``python -m eval --pred`` in the consumer's environment: EXPR predictions that are the CREMA-D sample's labels
    except the first 100 frames (all "Neutral"), scored as numpy scores them here."""
    video_id = "crema_d_1001_DFA_concat"
    n_frames = sample_store.video(video_id).attrs["n_frames"]
    labels = fit_to_frames(load_labels(LABELS), {video_id: n_frames})[0][video_id]["expr"]
    predicted = labels.copy()
    predicted[:100] = 0
    (tmp_path / "pred").mkdir()
    rows = "".join(f"{frame},{value}\n" for frame, value in enumerate(predicted))
    (tmp_path / "pred" / f"{video_id}.csv").write_text("frame,expr\n" + rows)
    result = subprocess.run([str(python), "-m", "eval", "--pred", str(tmp_path / "pred"), "--labels", str(LABELS),
                             "--out", str(tmp_path / "eval")], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    overall = json.loads((tmp_path / "eval" / "metrics.json").read_text())["overall"]
    valid = labels >= 0
    assert abs(overall["expr_accuracy"] - float(np.mean(predicted[valid] == labels[valid]))) < 1e-6
    absent = subprocess.run([str(python), "-c", "import importlib.util; print(importlib.util.find_spec('torch'))"],
                            capture_output=True, text=True)
    assert absent.stdout.strip() == "None"  # scored without torch

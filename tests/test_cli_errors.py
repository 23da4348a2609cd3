"""Every command line turns misuse and affectsync's errors into one line ``<prog>: <cause>`` on stderr and exit
status 2, never a traceback: a table of bad invocations of ``extract``, ``extract models``, ``features_store``,
``train``, ``train predict`` and ``eval``, run in this process, and a few as real processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import zarr

from eval.__main__ import main as eval_main
from extract.__main__ import main as extract_main
from features_store.__main__ import main as store_main
from features_store.errors import AffectsyncError
from train.__main__ import main as train_main

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLES = REPO_ROOT / "samples"
LABELS = str(SAMPLES / "crema_d_1001_DFA_concat_labels.csv")
MAINS = {"extract": extract_main, "features_store": store_main, "train": train_main, "eval": eval_main}

# (command, arguments with {foreign}, {missing}, {store}, {tmp} placeholders, prefix of the one line, cause in it)
BAD_INVOCATIONS = [
    ("extract", ["{video}", "--store", "{foreign}", "--features", "logmel"], "extract", "not an affectsync store"),
    ("extract", ["{video}", "--store", "{tmp}/s.zarr", "--features", "nope"], "extract", "unknown feature 'nope'"),
    ("extract", ["{video}", "--store", "{tmp}/s.zarr", "--set", "foo"], "extract", "expected FEATURE.FIELD=VALUE"),
    ("extract", ["{video}", "--store", "{tmp}/s.zarr", "--features", "logmel", "--set", "logmel.nope=1"], "extract",
     "logmel has no setting nope"),
    ("extract", ["{video}", "--store", "{tmp}/s.zarr", "--features", "words", "--set", "words.beam_size=wide"],
     "extract", "expected int"),
    ("extract", ["{video}", "--store", "{tmp}/s.zarr", "--features", "words", "--asr-model", "nope",
                 "--models", "{tmp}"], "extract", "nope: model folder missing"),
    ("extract", ["--store", "{tmp}/s.zarr"], "extract", "give at least one VIDEO_OR_DIR"),
    ("extract", ["{video}", "--store", "{tmp}/s.zarr", "--nope"], "extract", "unrecognized arguments: --nope"),
    ("extract", ["models", "--nope"], "extract models", "unrecognized arguments: --nope"),
    ("extract", ["models", "fetch", "nope", "--models", "{tmp}/m"], "extract models fetch", "unknown feature 'nope'"),
    ("extract", ["models", "fetch", "hf:Systran/faster-whisper-small"], "extract models fetch", "pin a revision"),
    ("extract", ["models", "unpack", "{tmp}/none.tar", "--models", "{tmp}/m"], "extract models unpack",
     "not a readable models tar"),
    ("extract", ["models", "pack", "{tmp}/m.tar", "--models", "{tmp}/no_models"], "extract models pack",
     "no models folder to pack"),
    ("features_store", ["info", "{missing}"], "features_store", "no feature store there"),
    ("features_store", ["verify", "{foreign}"], "features_store", "not an affectsync store"),
    ("features_store", ["ls", "{foreign}"], "features_store", "not an affectsync store"),
    ("features_store", ["show", "{store}", "nope", "--out", "{tmp}/x.png"], "features_store", "no video 'nope'"),
    ("features_store", ["merge", "{missing}", "--into", "{tmp}/m.zarr"], "features_store", "no feature store there"),
    ("features_store", ["export-h5", "{foreign}", "{tmp}/x.h5"], "features_store", "not an affectsync store"),
    ("features_store", ["nope"], "features_store", "invalid choice: 'nope'"),
    ("features_store", ["view", "{missing}", "--out", "{tmp}/page"], "features_store", "no feature store there"),
    ("features_store", ["export-table", "{store}", "{tmp}/t.parquet", "--features", "nope"], "features_store",
     "nope"),
    ("features_store", ["import-openface", "{tmp}/none.csv", "{store}"], "features_store", "none.csv"),
    ("extract", ["{video}", "--store", "{tmp}/s.zarr", "--features", "hf_audio:nope", "--models", "{tmp}"], "extract",
     "nope: model folder missing"),
    ("extract", ["{video}", "--store", "{tmp}/s.zarr", "--set", "face_crop.detector=retina"], "extract",
     "choose one of mtcnn, scrfd"),
    ("train", ["--store", "{foreign}", "--labels", LABELS], "train", "not an affectsync store"),
    ("train", ["--store", "{missing}", "--labels", LABELS], "train", "no feature store there"),
    ("train", ["--store", "{store}", "--labels", "{tmp}/none.csv"], "train", "(it does not exist)"),
    ("train", ["--store", "{store}", "--labels", LABELS, "--set", "foo"], "train", "expected FIELD=VALUE"),
    ("train", ["--store", "{store}", "--labels", LABELS, "--model", "nope"], "train", "invalid choice: 'nope'"),
    ("train", ["--store", "{store}", "--labels", LABELS, "--features", "nope"], "train", "nope"),
    ("train", ["--store", "{store}", "--labels", LABELS, "--features", "hf_audio:models/wavlm-base"], "train",
     "read by their stored names: hf_audio_wavlm_base"),
    ("train", ["--store", "{store}", "--labels", LABELS, "--device", "cuda:7"], "train", "device 'cuda:7'"),
    ("train", ["--store", "{store}", "--labels", LABELS, "--recipe", "nope"], "train", "invalid choice: 'nope'"),
    ("train", ["--store", "{store}", "--labels", LABELS, "--pseudo-labels", "x"], "train", "invalid choice: 'x'"),
    ("train", ["--store", "{store}", "--labels", LABELS, "--modality-dropout", "1.5"], "train",
     "modality_dropout is a probability below 1"),
    ("train", ["recipes", "--nope"], "train recipes", "unrecognized arguments: --nope"),
    ("train", ["predict", "{tmp}/no_run", "{store}", "--out", "{tmp}/out"], "train predict", "no model.pt"),
    ("train", ["predict", "{tmp}/no_run", "{foreign}", "--out", "{tmp}/out"], "train predict",
     "not an affectsync store"),
    ("eval", ["--run", "{tmp}/no_run"], "eval", "no config.json"),
    ("eval", ["--pred", "{tmp}"], "eval", "--pred needs --labels"),
    ("eval", ["--pred", "{tmp}", "--labels", "{tmp}/none.csv"], "eval", "(it does not exist)"),
    ("eval", ["--pred", "{tmp}", "--labels", LABELS, "--label-column", "foo"], "eval", "expected TASKCOL=CSVCOL"),
    ("eval", ["--runs-dir", "{tmp}/no_runs"], "eval", "no runs in"),
]


@pytest.fixture(scope="module")
def places(sample_store, tmp_path_factory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("cli")
    zarr.open_group(str(tmp / "foreign.zarr"), mode="w").create_array("x", shape=(3,), dtype="f4")
    return {"foreign": str(tmp / "foreign.zarr"), "missing": str(tmp / "missing.zarr"), "store": sample_store.location,
            "tmp": str(tmp), "video": str(SAMPLES / "grid_id2_vcd_swwp2s.mpg")}


@pytest.mark.parametrize("command, arguments, prog, cause", BAD_INVOCATIONS,
                         ids=[f"{c}-{i}" for i, (c, *_) in enumerate(BAD_INVOCATIONS)])
def test_bad_invocation_is_one_line(command, arguments, prog, cause, places, capsys):
    argv = [argument.format(**places) for argument in arguments]
    code = MAINS[command](argv)
    error = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2, error
    assert len(error) == 1 and error[0].startswith(f"{prog}: ") and cause in error[0], error
    assert "Traceback" not in error[0]


@pytest.mark.parametrize("command, arguments", [
    ("features_store", ["verify", "{foreign}"]),
    ("extract", ["{video}", "--store", "{tmp}/p.zarr", "--set", "words.beam_size"]),
    ("eval", ["--pred", "{tmp}"]),
])
def test_bad_invocation_of_a_real_process(command, arguments, places):
    result = subprocess.run([sys.executable, "-m", command, *[a.format(**places) for a in arguments]],
                            capture_output=True, text=True, cwd=REPO_ROOT)
    lines = [line for line in result.stderr.splitlines() if line.strip() and "Warning" not in line]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"{command}: "), result.stderr


def test_every_project_error_has_one_root():
    import eval.labels
    import eval.predictions
    import eval.runs
    import extract.ingest
    import extract.pipeline
    import extract.videos
    import extract.weights
    import features_store.claims
    import features_store.interop
    import train.experiment
    import train.features
    import train.folds

    errors = [eval.labels.LabelError, eval.predictions.PredictionError, eval.runs.RunError,
              extract.ingest.IngestError, extract.pipeline.ExtractionError, extract.videos.VideoIdCollision,
              extract.weights.WeightsError, features_store.claims.ClaimLost, features_store.interop.InteropError,
              features_store.StoreError, train.experiment.TrainError, train.features.FeatureError,
              train.folds.FoldError]
    assert all(issubclass(error, AffectsyncError) for error in errors)
    assert issubclass(extract.weights.WeightsError, FileNotFoundError)  # the built-in bases stay
    assert issubclass(eval.labels.LabelError, ValueError)


def test_out_of_memory_names_the_setting_to_lower(capsys):
    """A real allocation failure (torch cannot allocate 4 PB on this host) inside a batched call becomes one line
    naming the setting; other errors pass through unchanged."""
    import torch

    from features_store.cli import run_command
    from features_store.common import out_of_memory_names
    from features_store.errors import OutOfMemory

    def predict(argv: list[str]) -> int:
        with out_of_memory_names("--batch-size", 64):
            torch.empty(1 << 50)
        return 0

    assert run_command("train predict", predict, []) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("train predict: out of memory with --batch-size at 64: lower it") and "\n" not in error
    with pytest.raises(OutOfMemory):
        with out_of_memory_names("--set bert.batch_segments", 16):
            torch.empty(1 << 50)
    with pytest.raises(ValueError, match="not memory"):
        with out_of_memory_names("--batch-size", 64):
            raise ValueError("not memory")

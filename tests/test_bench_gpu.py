"""bench.gpu on the CPU, as `make bench-gpu` runs it on a GPU: every stage reports a throughput or why it was
skipped, the stages that need only the installed wheels run here, and a summary line ends the output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
STAGES = ("decode", "mtcnn", "alignment", "fer", "onnx_face_model", "whisper", "bert", "vggish", "train_step")
RUN_HERE = ("decode", "mtcnn", "alignment", "fer", "onnx_face_model", "bert", "vggish", "train_step")


@pytest.mark.slow
def test_every_stage_reports_on_cpu():
    done = subprocess.run([sys.executable, "-m", "bench.gpu", "--device", "cpu", "--seconds-per-stage", "0.5"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert all(record["bench"] == "gpu" for record in records)
    by_stage = {record["stage"]: record for record in records}
    assert sorted(record["stage"] for record in records) == sorted((*STAGES, "summary")), records

    for name in STAGES:
        record = by_stage[name]
        if "skipped" in record:
            assert name not in RUN_HERE, f"{name} skipped: {record['skipped']}"
            assert record["skipped"].strip() and "\n" not in record["skipped"]
            continue
        assert record["device"] == "cpu", record
        assert record["per_s"] > 0 and record["batch"] > 0 and record["calls"] >= 1, record
        assert record["items"], record
    assert by_stage["onnx_face_model"]["provider"] == "CPUExecutionProvider"
    if "skipped" not in by_stage["whisper"]:
        assert by_stage["whisper"]["compute_type"] == "int8"
        assert by_stage["whisper"]["real_time_factor"] > 0

    summary = by_stage["summary"]
    assert summary["device"] == "cpu" and summary["gpu_name"] is None and summary["total_s"] > 0
    assert records[-1] is summary

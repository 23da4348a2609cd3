"""Stores at fsspec URLs: extraction writes into an S3-compatible server (moto) on 127.0.0.1, and other processes
verify and train from it. Credentials and the endpoint come from the usual AWS environment variables."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from extract.run import run_extraction
from features_store import FeatureStore, StoreError
from features_store import open as open_store

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
CREMA = "crema_d_1001_DFA_concat"
BUCKET = "affectsync-test"


@pytest.fixture(scope="module")
def s3_env():
    """A moto S3 server on a free loopback port, a bucket, and the AWS variables that point boto/s3fs at it."""
    moto_server = pytest.importorskip("moto.server", reason="moto (requirements/test.txt)")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    monkeypatch = pytest.MonkeyPatch()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    import boto3

    boto3.client("s3").create_bucket(Bucket=BUCKET)
    yield env
    monkeypatch.undo()
    server.stop()


def test_extract_into_s3_then_train_from_it_in_another_process(s3_env, sample_store, tmp_path):
    url = f"s3://{BUCKET}/sample.zarr"
    report = run_extraction([SAMPLES / f"{CREMA}.mp4"], url, ["logmel", "mfcc_mel"], progress=False)
    assert report.extracted == [CREMA]
    remote = open_store(url)
    np.testing.assert_array_equal(remote.video(CREMA).read("logmel"), sample_store.video(CREMA).read("logmel"))
    assert run_extraction([SAMPLES / f"{CREMA}.mp4"], url, ["logmel"], progress=False).skipped == [CREMA]

    env = {**os.environ, **s3_env}
    verify = subprocess.run([sys.executable, "-m", "features_store", "verify", url], capture_output=True, text=True,
                            env=env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    train = subprocess.run(
        [sys.executable, "-m", "train", "--store", url, "--labels", str(SAMPLES / f"{CREMA}_labels.csv"),
         "--features", "logmel,mfcc_mel", "--epochs", "2", "--name", "from_s3", "--quiet"],
        capture_output=True, text=True, env=env, cwd=tmp_path)
    assert train.returncode == 0, train.stderr[-2000:]
    assert (tmp_path / "runs" / "from_s3" / "model.pt").is_file()


def test_remote_store_opened_read_only_cannot_change(s3_env):
    url = f"s3://{BUCKET}/read_only.zarr"
    run_extraction([SAMPLES / "grid_id2_vcd_swwp2s.mpg"], url, ["logmel"], progress=False)
    video = open_store(url).video("grid_id2_vcd_swwp2s")
    with pytest.raises(ValueError, match="read-only"):
        video.write("extra", np.zeros(3), {})
    assert "extra" not in FeatureStore(url).video("grid_id2_vcd_swwp2s").array_names()
    with pytest.raises(StoreError, match="no feature store there"):
        open_store(f"s3://{BUCKET}/missing.zarr")


def test_file_url_is_the_local_store(tmp_path, sample_store):
    url = f"file://{tmp_path}/local.zarr"
    report = run_extraction([SAMPLES / "grid_id2_vcd_swwp2s.mpg"], url, ["logmel"], progress=False)
    assert report.extracted == ["grid_id2_vcd_swwp2s"]
    np.testing.assert_array_equal(FeatureStore(str(tmp_path / "local.zarr")).video("grid_id2_vcd_swwp2s")
                                  .read("logmel"), sample_store.video("grid_id2_vcd_swwp2s").read("logmel"))
    assert open_store(url).dask("logmel").shape == (75, 200)

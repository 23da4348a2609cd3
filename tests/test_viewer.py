"""The store viewer (``python -m features_store view``): its data layer against independent oracles, its reads of an
hour-long video counted chunk by chunk, and the page itself in a real headless browser (Debian's chromium, driven by
selenium through chromium-driver): the served page and the static export of ``view --out``.

The browser tests skip when chromium is absent, except in CI (``CI`` set), where .ci/run installs it and its absence
is a failure. ``AFFECTSYNC_UPDATE_DOCS=1`` also writes the screenshot to docs/viewer.png (the README shows it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.storage import LocalStore, WrapperStore

from eval.labels import load_labels
from extract.ingest import iter_rgb_frames
from features_store import FeatureStore
from features_store.errors import UsageError
from features_store.schema import ArraySchema
from features_store.viewer import add_arguments, run
from features_store.viewer.data import DEFAULT_WINDOW_FRAMES, ViewerData
from features_store.viewer.export import export_static
from features_store.viewer.runs import LabelReader, RunPredictions
from features_store.viewer.server import start_server

pytestmark = pytest.mark.usefixtures("one_thread")

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLES = REPO_ROOT / "samples"
LABELS = SAMPLES / "crema_d_1001_DFA_concat_labels.csv"
VIDEO = "crema_d_1001_DFA_concat"
SCREENSHOT = REPO_ROOT / "docs" / "viewer.png"
TIMEOUT_S = 20


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def run_dir(sample_store, tmp_path_factory) -> Path:
    """A real training run on the sample store (one epoch of a small M3T on logmel, the samples' expression labels):
    its predictions/<video>.csv and config.json are what ``view --run`` reads."""
    from train.experiment import Experiment, ExperimentConfig
    from train.loop import OptimConfig

    config = ExperimentConfig(store=sample_store.location, labels=str(LABELS), features=("logmel",),
                              model_overrides={"modality_dim": 32, "gru_hidden": 32, "fc_dim": 32},
                              optim=OptimConfig(epochs=1), device="cpu")
    return Experiment(config, tmp_path_factory.mktemp("runs") / "tiny", progress=False).run()


@pytest.fixture(scope="module")
def viewer_data(sample_store, run_dir) -> ViewerData:
    return ViewerData(FeatureStore(sample_store.location), [str(SAMPLES)], RunPredictions(run_dir))


@pytest.fixture(scope="module")
def server(viewer_data):
    server, thread = start_server(viewer_data, 0)
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless chromium at 1200 x 800 CSS pixels, its console log kept."""
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        webdriver = None
    if chromium is None or chromedriver is None or webdriver is None:
        missing = "selenium" if webdriver is None else "chromium and chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(f"{missing} missing in CI (.ci/run installs them)")
        pytest.skip(f"{missing} not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1200,800", "--allow-file-access-from-files",
                     f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1200, "height": 800, "deviceScaleFactor": 1, "mobile": False})
    yield driver
    driver.quit()


# ------------------------------------------------------------------ helpers
def wait_for(browser, script: str, what: str):
    """Poll ``script`` (a JS expression) until it is truthy; its value."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        value = browser.execute_script(f"return {script};")
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} ({script})")


def console_errors(browser) -> list[dict]:
    """The browser log's errors since the last call (the log is drained by reading it)."""
    return [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def wait_frame_shown(browser, frame: int, image: bool = True) -> None:
    wait_for(browser, f"document.getElementById('word').dataset.frame === '{frame}'", f"frame {frame}'s details")
    if image:
        wait_for(browser, f"document.getElementById('frame-image').dataset.loadedFrame === '{frame}'",
                 f"frame {frame}'s image")


def painted_pixels(browser, canvas_id: str) -> int:
    """Pixels of a canvas that are drawn (not transparent, not white)."""
    return browser.execute_script("""
        const canvas = document.getElementById(arguments[0]);
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let count = 0;
        for (let k = 0; k < data.length; k += 4) {
          if (data[k + 3] > 0 && (data[k] < 245 || data[k + 1] < 245 || data[k + 2] < 245)) count++;
        }
        return count;""", canvas_id)


def image_digest(browser) -> str:
    """sha256 of the frame image's pixels as the page decoded them."""
    pixels = browser.execute_script("""
        const image = document.getElementById('frame-image');
        const canvas = document.createElement('canvas');
        canvas.width = image.naturalWidth; canvas.height = image.naturalHeight;
        const ctx = canvas.getContext('2d');
        ctx.drawImage(image, 0, 0);
        return Array.from(ctx.getImageData(0, 0, canvas.width, canvas.height).data.filter((_, k) => k % 97 === 0));""")
    return hashlib.sha256(bytes(pixels)).hexdigest()


def frames_with_face_and_word(store: FeatureStore, video_id: str) -> np.ndarray:
    video = store.video(video_id)
    return np.flatnonzero(video.read("word_valid") & video.read("face_valid"))


def open_page(browser, url: str, frame: int, image: bool = True) -> None:
    browser.get(f"{url}#video={VIDEO}&frame={frame}")
    wait_for(browser, "document.body.dataset.ready === 'true'", "the page")
    wait_frame_shown(browser, frame, image)


# ------------------------------------------------------------------ the data layer
def test_source_frames_are_the_frames_ingest_decodes(viewer_data):
    """Frames decoded by seeking, in any order, are exactly those ingest counts (its own decode is the oracle)."""
    for video_id, name in ((VIDEO, "crema_d_1001_DFA_concat.mp4"), ("grid_id2_vcd_swwp2s", "grid_id2_vcd_swwp2s.mpg")):
        frames = list(iter_rgb_frames(SAMPLES / name, ahead_frames=0))
        for index in (40, 41, 42, 300 % len(frames), 7, 0, len(frames) - 1, len(frames) // 2):
            assert np.array_equal(viewer_data.source_rgb(video_id, index), frames[index]), (video_id, index)


def test_landmarks_go_back_to_the_frame_through_face_align(viewer_data, sample_store):
    """Landmarks mapped to the source frame, pushed through face_align again, land on the crop's landmarks, and they
    lie inside the face box (source px)."""
    video = sample_store.video(VIDEO)
    index = int(frames_with_face_and_word(sample_store, VIDEO)[0])
    details = viewer_data.frame(VIDEO, index)
    align = video.read("face_align", index, index + 1)[0].astype(np.float64)
    source = np.array(details["landmarks_source"])
    assert np.allclose(source @ align[:, :2].T + align[:, 2], video.read("landmarks68", index, index + 1)[0], atol=0.02)
    x1, y1, x2, y2 = details["box"]
    inside = (source[:, 0] > x1 - 10) & (source[:, 0] < x2 + 10) & (source[:, 1] > y1 - 10) & (source[:, 1] < y2 + 10)
    assert inside.mean() > 0.9


def test_run_labels_read_as_eval_reads_them(run_dir, viewer_data, sample_store, tmp_path):
    """The viewer's small label reader (features_store may not import eval) agrees with eval.labels, the authority,
    on the samples' CSV and on an Aff-Wild2 folder made from it (EXPR, plus VA and AU columns derived from it)."""
    n_frames = sample_store.video(VIDEO).n_frames
    expected = load_labels(LABELS).labels[VIDEO]["expr"]
    run = RunPredictions(run_dir)
    loaded = run.range(VIDEO, np.arange(n_frames + 1), True, n_frames)["expr"]
    assert loaded["label"] == expected.tolist()
    csv_rows = (run_dir / "predictions" / f"{VIDEO}.csv").read_text().splitlines()[1:]
    assert loaded["prediction"] == [int(row.split(",")[2]) for row in csv_rows]

    classes = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other")
    aus = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26")
    va = np.stack([np.cos(expected / 3.0), np.sin(expected / 3.0) * 0.5], axis=1).round(3)
    va[::17] = -5  # invalid frames
    au = (expected[:, None] + np.arange(len(aus))) % 2
    au[::13] = -1
    for folder, header, rows in (("EXPR_Classification_Challenge", classes, expected[:, None]),
                                 ("VA_Estimation_Challenge", ("valence", "arousal"), va),
                                 ("AU_Detection_Challenge", aus, au)):
        (tmp_path / "aw2" / folder / "Train_Set").mkdir(parents=True)
        lines = [",".join(header)] + [",".join(f"{v:g}" for v in row) for row in rows]
        (tmp_path / "aw2" / folder / "Train_Set" / f"{VIDEO}.txt").write_text("\n".join(lines) + "\n")
    oracle = load_labels(tmp_path / "aw2").labels[VIDEO]
    mine = LabelReader(tmp_path / "aw2", {}).read(VIDEO, {"va": ["valence", "arousal"], "expr": list(classes),
                                                          "au": list(aus)}, n_frames)
    for task in ("va", "expr", "au"):
        assert np.array_equal(mine[task].astype(oracle[task].dtype), oracle[task]), task


class CountingStore(WrapperStore):
    """A zarr store that counts the keys read through it (chunks are ``<array>/c/<i>/...``)."""

    def __init__(self, store):
        super().__init__(store)
        self.reads: Counter = Counter()

    async def get(self, key, prototype, byte_range=None):
        self.reads[key] += 1
        return await self._store.get(key, prototype, byte_range)

    def chunk_reads(self) -> dict[str, int]:
        """Array name -> chunk keys read (metadata not counted)."""
        counts: Counter = Counter()
        for key, times in self.reads.items():
            if "/c/" in key:
                counts[key.split("/c/")[0].rsplit("/", 1)[-1]] += 1
        return dict(counts)

    def reset(self) -> None:
        self.reads.clear()


def test_an_hour_long_video_opens_reading_a_few_chunks(tmp_path):
    """A 90,000-frame video (one hour at 25 fps): listing the videos, describing one, the page's overview of the
    whole video and its first window read chunk by chunk only what they draw; the face crops are read one frame at a
    time. The answers match numpy on the written arrays. (Counted through zarr, the path remote stores take; a local
    store reads the same rows straight from the chunk files.)"""
    n_frames, fps, mel_hz = 90_000, 25.0, 100.0
    rng = np.random.default_rng(0)
    store = FeatureStore(str(tmp_path / "long.zarr"), mode="a")
    video = store.create_video("long", {"source_name": "long.mp4", "source_size_bytes": 1, "source_sha256": "0",
                                        "width": 64, "height": 48, "fps": fps, "n_frames": n_frames,
                                        "duration_s": n_frames / fps, "first_frame_time_s": 0.0})
    frame_time = np.arange(n_frames) / fps
    face_valid = rng.random(n_frames) > 0.2
    fer = rng.dirichlet(np.ones(7), n_frames).astype(np.float32) * face_valid[:, None]
    word_starts = np.arange(0, n_frames / fps - 1, 0.7)
    words = [{"text": f"w{k}", "start": float(t), "end": float(t + 0.5), "conf": 1.0}
             for k, t in enumerate(word_starts)]
    word_index = np.full(n_frames, -1, np.int32)
    for k, word in enumerate(words):
        word_index[(frame_time >= word["start"]) & (frame_time < word["end"])] = k
    mel_time = np.arange(int(n_frames / fps * mel_hz)) / mel_hz
    video.write("frame_time", frame_time, {}, ArraySchema(kind="time", units="s"))
    video.write("face_valid", face_valid, {}, ArraySchema(kind="validity"))
    video.write("fer", fer, {"provenance": {"feature": "fer"}}, ArraySchema(
        validity="face_valid", units="probability", columns=tuple("ADFHSUN")))
    video.write("feat32", rng.standard_normal((n_frames, 32)).astype(np.float32), {"provenance": {"feature": "f"}},
                ArraySchema())
    video.write_blocks("face_crop", (n_frames, 8, 8, 3), np.uint8,
                       (rng.integers(0, 255, (9000, 8, 8, 3), dtype=np.uint8) for _ in range(10)), {},
                       ArraySchema(validity="face_valid", axes=("y", "x", "channel")))
    video.write("word_index", word_index, {}, ArraySchema(kind="index", indexes_attribute="words"))
    video.set_attribute("words", words)
    video.write("mel64_time", mel_time, {}, ArraySchema(kind="time", clock="mel64_time", units="s"))
    video.write("mel64", rng.standard_normal((len(mel_time), 8)).astype(np.float32) - 30, {},
                ArraySchema(clock="mel64_time", units="dB"))
    video.write("mel64_row", np.minimum((frame_time * mel_hz).round().astype(np.int32), len(mel_time) - 1), {},
                ArraySchema(kind="index", indexes="mel64"))
    video.set_complete(True)

    counting = CountingStore(LocalStore(str(tmp_path / "long.zarr"), read_only=True))
    opened = FeatureStore(str(tmp_path / "long.zarr"))
    opened.root = zarr.open_group(counting, mode="r", use_consolidated=False)
    data = ViewerData(opened)
    chunks = {name: -(-array.shape[0] // array.chunks[0]) for name, array in
              ((name, opened.video("long").array(name)) for name in opened.video("long").array_names())}

    listed, meta = data.index(), data.video("long")
    assert listed["videos"][0]["T"] == n_frames and meta["default_window"] == [0, DEFAULT_WINDOW_FRAMES]
    assert counting.chunk_reads() == {}  # metadata only

    counting.reset()
    overview = data.range("long", 0, n_frames, 1000, None, ["face_valid", "words"])
    assert not overview["exact"] and len(overview["edges"]) == 1001
    assert set(counting.chunk_reads()) == {"frame_time", "face_valid"}  # no feature, no crop
    assert np.array_equal(overview["face_valid"], face_valid[overview["edges"][:-1]].astype(float))

    counting.reset()
    window = data.range("long", 0, DEFAULT_WINDOW_FRAMES, 900, "feat32")
    read = counting.chunk_reads()
    assert "face_crop" not in read
    for name, count in read.items():  # the first window lies in each array's first chunk (or two)
        assert count <= 2 < chunks[name] or count <= chunks[name] <= 2, (name, count, chunks[name])
    assert sum(read.values()) <= 12 < sum(chunks.values()) / 4
    edges = np.array(window["edges"])
    expected = [fer[a:b][face_valid[a:b]].mean(axis=0) if face_valid[a:b].any() else np.full(7, np.nan)
                for a, b in zip(edges[:-1], edges[1:])]
    got = np.array([[np.nan if v is None else v for v in row] for row in window["fer"]["values"]])
    assert np.allclose(got, np.round(expected, 3), equal_nan=True)
    assert window["audio"]["name"] == "mel64" and window["audio"]["time_s"][0] == 0.0
    assert abs(window["audio"]["time_s"][-1] - DEFAULT_WINDOW_FRAMES / fps) < 1 / fps  # the rows nearest the frames

    counting.reset()
    details = data.frame("long", 45_000)
    crop = data.crop_rgb("long", 45_000)
    assert counting.chunk_reads().get("face_crop", 0) <= 1
    assert all(count == 1 for count in counting.chunk_reads().values())
    assert details["word"] == (None if word_index[45_000] < 0 else {"index": int(word_index[45_000]),
                                                                   **words[word_index[45_000]]})
    assert (crop is None) == (not face_valid[45_000])


# ------------------------------------------------------------------ the page in a browser
def test_page_loads_draws_the_timelines_and_steps_one_frame_per_arrow_key(browser, server, sample_store):
    frame = int(frames_with_face_and_word(sample_store, VIDEO)[5])
    open_page(browser, server.url, frame)
    assert console_errors(browser) == []
    listed = browser.execute_script("return Array.from(document.querySelectorAll('#video-list li'), "
                                    "li => li.dataset.video + ' ' + li.querySelector('.facts').textContent)")
    assert listed == ["crema_d_1001_DFA_concat complete T 379 · 12.65 s", "grid_id2_vcd_swwp2s complete T 75 · 3.00 s"]
    for canvas in ("tl-overview", "tl-words", "tl-face", "tl-audio", "tl-fer", "tl-feature", "tl-task-expr",
                   "tl-axis"):
        assert painted_pixels(browser, canvas) > 50, canvas
    assert browser.execute_script("return document.getElementById('frame-image').src").endswith("kind=source")

    before_src = browser.execute_script("return document.getElementById('frame-image').src")
    before_digest = image_digest(browser)
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    ActionChains(browser).send_keys(Keys.ARROW_RIGHT).perform()
    wait_frame_shown(browser, frame + 1)
    assert browser.execute_script("return document.getElementById('frame-index').dataset.frame") == str(frame + 1)
    assert browser.execute_script("return document.getElementById('frame-index').textContent") == \
        f"frame {frame + 1} / 379"
    assert browser.execute_script("return document.getElementById('frame-image').src") != before_src
    assert image_digest(browser) != before_digest
    time_shown = browser.execute_script("return document.getElementById('frame-time').textContent")
    assert time_shown == f"{sample_store.video(VIDEO).read('frame_time')[frame + 1]:.3f} s"
    ActionChains(browser).send_keys(Keys.ARROW_LEFT).perform()
    wait_frame_shown(browser, frame)
    assert console_errors(browser) == []


def test_the_word_at_the_playhead_is_the_store_word_and_the_mouse_scrubs(browser, server, sample_store, run_dir):
    video = sample_store.video(VIDEO)
    words, word_index = video.attrs["words"], video.read("word_index")
    candidates = frames_with_face_and_word(sample_store, VIDEO)
    frame = int(candidates[len(candidates) // 2])
    open_page(browser, server.url, 0)
    browser.execute_script(f"location.hash = '#video={VIDEO}&frame={frame}'")
    wait_frame_shown(browser, frame)
    shown = browser.execute_script("const w = document.getElementById('word'); return [w.textContent, "
                                   "w.dataset.wordIndex]")
    assert shown == [words[word_index[frame]]["text"], str(word_index[frame])]
    expr_line = browser.execute_script("return document.querySelector('#tasks-now [data-task=expr]').textContent")
    predicted = int((run_dir / "predictions" / f"{VIDEO}.csv").read_text().splitlines()[frame + 1].split(",")[2])
    classes = RunPredictions(run_dir).tasks["expr"]
    label = classes[int(load_labels(LABELS).labels[VIDEO]["expr"][frame])]
    assert expr_line == f"expr: predicted {classes[predicted]} · label {label}"

    target = 250  # a click on the timeline at frame 250's time moves the playhead there
    times = video.read("frame_time")
    canvas = browser.find_element("id", "tl-fer")
    width = browser.execute_script("return arguments[0].getBoundingClientRect().width", canvas)
    view_start, view_end = times[0], times[-1] + (times[-1] - times[-2])
    x = ((times[target] + times[target + 1]) / 2 - view_start) / (view_end - view_start) * width
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(browser).move_to_element_with_offset(canvas, int(round(x - width / 2)), 0).click().perform()
    shown = int(wait_for(browser, "document.getElementById('word').dataset.frame !== '" + str(frame) + "' && "
                         "document.getElementById('word').dataset.frame", "the clicked frame"))
    assert abs(shown - target) <= 1
    assert console_errors(browser) == []


def test_screenshot_of_a_frame_with_a_face_and_a_word(browser, server, sample_store, tmp_path):
    from PIL import Image

    video = sample_store.video(VIDEO)
    candidates = frames_with_face_and_word(sample_store, VIDEO)
    words, word_index = video.attrs["words"], video.read("word_index")
    frame = int(max(candidates[:120], key=lambda f: len(words[word_index[f]]["text"])))  # a long word, early on
    open_page(browser, server.url, frame)
    wait_for(browser, "document.getElementById('crop-image').complete", "the crop")
    out = tmp_path / "viewer.png"
    browser.save_screenshot(str(out))
    image = Image.open(out)
    assert image.size == (1200, 800)
    assert len(np.unique(np.asarray(image.convert("RGB").resize((60, 40))).reshape(-1, 3), axis=0)) > 100  # not blank
    if os.environ.get("AFFECTSYNC_UPDATE_DOCS"):
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copy(out, SCREENSHOT)
    assert console_errors(browser) == []


def test_static_export_opens_from_file_without_errors(browser, viewer_data, sample_store, tmp_path):
    page = export_static(viewer_data, tmp_path / "shared", bins=500, max_frames=100)
    assert len(list((tmp_path / "shared" / "data").glob("*/frames/*"))) <= 100 + 100  # two videos, crops only
    frame = int(frames_with_face_and_word(sample_store, VIDEO)[3])
    browser.get(f"{page.as_uri()}#video={VIDEO}&frame={frame}")
    wait_for(browser, "document.body.dataset.ready === 'true'", "the static page")
    wait_frame_shown(browser, frame)
    assert console_errors(browser) == []
    for canvas in ("tl-overview", "tl-words", "tl-face", "tl-audio", "tl-fer", "tl-feature", "tl-task-expr"):
        assert painted_pixels(browser, canvas) > 50, canvas
    video = sample_store.video(VIDEO)
    word = video.attrs["words"][video.read("word_index")[frame]]["text"]
    assert browser.execute_script("return document.getElementById('word').textContent") == word
    assert browser.execute_script("return document.getElementById('frame-image').naturalWidth") == 112

    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    ActionChains(browser).send_keys(Keys.ARROW_RIGHT).perform()
    wait_frame_shown(browser, frame + 1, image=False)
    assert browser.execute_script("return document.getElementById('frame-index').dataset.frame") == str(frame + 1)
    browser.execute_script("document.getElementById('feature-select').value = 'bert';"
                           "document.getElementById('feature-select').dispatchEvent(new Event('change'));")
    wait_for(browser, "window.affectsyncViewer.state.range.heat && "
                      "window.affectsyncViewer.state.range.heat.name === 'bert'", "the bert strip")
    assert console_errors(browser) == []


def test_view_command_writes_the_static_page(sample_store, tmp_path):
    """``view STORE --out DIR`` through the functions the CLI calls."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([sample_store.location, "--out", str(tmp_path / "page"), "--export-frames", "5"])
    assert run(args) == 0
    assert (tmp_path / "page" / "index.html").is_file() and (tmp_path / "page" / "static" / "app.js").is_file()
    assert len(list((tmp_path / "page" / "data").glob("v0000/frames/*"))) <= 5

    with socket.socket() as taken:  # a port in use is a one-line error naming --port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        args = parser.parse_args([sample_store.location, "--port", str(taken.getsockname()[1])])
        with pytest.raises(UsageError, match="--port"):
            run(args)


def test_export_replaces_an_earlier_export_and_refuses_a_foreign_folder(viewer_data, tmp_path):
    out = tmp_path / "shared"
    export_static(viewer_data, out, bins=50, max_frames=3)
    (out / "data" / "v0099").mkdir()  # a video of an earlier, larger export
    export_static(viewer_data, out, bins=50, max_frames=3)
    assert sorted(p.name for p in (out / "data").iterdir() if p.is_dir()) == ["v0000", "v0001"]
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep me")
    with pytest.raises(UsageError, match="not an earlier `view --out` export"):
        export_static(viewer_data, foreign)
    assert [p.name for p in foreign.iterdir()] == ["thesis.tex"]


def test_server_refuses_other_host_names_and_answers_failures_as_json(sample_store, tmp_path):
    """A request addressed to another host name (DNS rebinding) gets 403; a source video that went away after the
    folders were listed gets a JSON error (500), and the server answers the next request."""
    import http.client

    media = tmp_path / "media"
    media.mkdir()
    source = media / f"{VIDEO}.mp4"
    shutil.copy(SAMPLES / source.name, source)
    data = ViewerData(FeatureStore(sample_store.location), [str(media)])
    server, thread = start_server(data, 0)
    try:
        def get(path: str, host: str = "127.0.0.1") -> tuple[int, dict]:
            connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=TIMEOUT_S)
            connection.request("GET", path, headers={"Host": host})
            response = connection.getresponse()
            body = response.read()
            connection.close()
            return response.status, (json.loads(body) if response.getheader("Content-Type") == "application/json"
                                     else {})
        assert get("/api/index", host="attacker.example:8765")[0] == 403
        assert get("/api/index", host=f"localhost:{server.server_address[1]}")[0] == 200
        assert get(f"/api/image?id={VIDEO}&i=3&kind=source")[0] == 200
        source.unlink()
        data.sources.close()  # the open file would still decode: make the next request look for it again
        status, body = get(f"/api/image?id={VIDEO}&i=40&kind=source")
        assert status in (404, 500) and "error" in body
        assert get(f"/api/frame?id={VIDEO}&i=40")[0] == 200
    finally:
        server.shutdown()
        server.server_close()
        data.sources.close()
        thread.join(5)

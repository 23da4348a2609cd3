"""``bert``: word vectors from the shipped MiniLM BERT over the recognised words of the sample store, checked against
the frame rule (one vector per word's frames, zeros elsewhere), against the definition (sum of the last 4 layers,
averaged over sub-tokens) computed independently, and with a user BERT folder the test builds."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from extract import registry
from extract.run import run_extraction
from extract.speech.bert import MINILM_WEIGHTS
from features_store import FeatureStore

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


@pytest.fixture(scope="module")
def bert():
    return registry.create("bert")


def test_bert_rows_repeat_each_word_and_are_zero_elsewhere(sample_store):
    for video_id in sample_store.video_ids():
        video = sample_store.video(video_id)
        rows, word_index = video.read("bert"), video.read("word_index")
        assert rows.shape == (video.n_frames, 384) and rows.dtype == np.float32
        assert not rows[word_index < 0].any()
        used = np.unique(word_index[word_index >= 0])
        assert len(used) >= 3
        for word in used:
            frames = rows[word_index == word]
            assert np.abs(frames[0]).sum() > 0
            np.testing.assert_array_equal(frames, np.broadcast_to(frames[0], frames.shape))
        # a word's vector depends on the word and its segment (its context), nothing else: CREMA-D's six takes of
        # one sentence, each its own segment, repeat four vectors; every other word has its own
        words, segments = video.attrs["words"], {}
        for k, word in enumerate(words):
            segments.setdefault(word["segment"], []).append(k)
        in_context = {k: (tuple(words[j]["text"] for j in members), members.index(k))
                      for members in segments.values() for k in members}
        firsts = np.array([rows[np.flatnonzero(word_index == word)[0]] for word in used])
        assert len(np.unique(firsts.round(4), axis=0)) == len({in_context[word] for word in used})
        assert video.array("bert").attrs["validity"] == "word_valid"
        assert video.array("bert").attrs["provenance"]["requires"] == ["words"]


def test_word_vector_is_last_four_layers_summed_and_averaged_over_subtokens(bert):
    """Computed here straight from transformers: "dashwood" is two sub-tokens in the middle of its sentence."""
    from transformers import AutoModel, AutoTokenizer

    words = ["and", "mister", "john", "dashwood", "had", "then", "leisure"]
    ours = bert.word_vectors([words])[0]
    folder = MINILM_WEIGHTS.path().parent
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(" ".join(words))["input_ids"])
    first = tokens.index("dash")
    assert tokens[first + 1] == "##wood"
    with torch.inference_mode():
        hidden = model(**tokenizer(" ".join(words), return_tensors="pt"), output_hidden_states=True).hidden_states
    expected = torch.stack(hidden[-4:]).sum(0)[0, first:first + 2].mean(0).numpy()
    np.testing.assert_allclose(ours[3], expected, rtol=1e-4, atol=1e-4)


def test_word_vectors_depend_on_their_segment(bert):
    river, money = bert.word_vectors([["the", "bank", "of", "the", "river"], ["the", "bank", "approved", "the", "loan"]])
    assert river.shape == money.shape == (5, 384)
    assert not np.allclose(river[1], money[1], atol=1e-3)


def test_long_segments_are_encoded_in_pieces(bert):
    words = ["word"] * 300  # 300 tokens: more than max_tokens (256) with [CLS] and [SEP]
    vectors = bert.word_vectors([words])[0]
    assert vectors.shape == (300, 384) and np.abs(vectors).sum(1).min() > 0


def test_user_bert_folder(tmp_path, sample_store):
    """`--bert-model PATH`: a BERT folder of another width (a small one built here, with the shipped vocabulary)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path / "tiny-bert"
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(MINILM_WEIGHTS.path().parent).save_pretrained(folder)
    location = tmp_path / "store.zarr"
    shutil.copytree(sample_store.location, location)
    report = run_extraction([SAMPLES / "grid_id2_vcd_swwp2s.mpg"], str(location), ["words", "bert"],
                            progress=False, overwrite=True, settings={"bert": {"model": str(folder)}})
    assert not report.failed, report.failed
    video = FeatureStore(str(location)).video("grid_id2_vcd_swwp2s")
    rows = video.read("bert")
    assert rows.shape == (video.n_frames, 32)
    assert (np.abs(rows).sum(1) > 0).tolist() == video.read("word_valid").tolist()
    weights = video.array("bert").attrs["provenance"]["weights"]
    assert weights["folder"] == "tiny-bert" and weights["file"] == "model.safetensors"

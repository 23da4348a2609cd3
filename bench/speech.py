"""Benchmark: ASR real-time factor (transcription and forced alignment) with its word error rate, BERT and VGGish
frames per second.

Prints one JSON object per line (``make bench``). Inputs are the real speech of the samples (CREMA-D's six takes of
one sentence, 12.6 s, and a GRID sentence) and, for VGGish, the CREMA-D audio tiled to 20 s at 29.97 fps. Each figure
comes with a baseline measured in the same run:

- ``asr``: Whisper tiny.en with its own word times vs the same plus pocketsphinx alignment (the ``words`` default),
  the words heard in the samples, and the word error rate on the shared GRID and LibriVox clips (when
  ../shared/media is there; Whisper's normaliser on both sides);
- ``bert``: our per-word vectors repeated over frames vs one plain forward pass over the same segments;
- ``vggish``: one 0.96 s window per frame vs torchvggish's own framing (one window per 0.96 s) on the same audio,
  with weights built here (speed does not depend on their values).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.audio import REPO_ROOT, SAMPLE_VIDEO, long_video
from bench.results import best_seconds, emit
from bench.speech_corpora import SHARED_MEDIA, grid_clips, librivox_utterances, word_error_rate
from extract import registry
from extract.ingest import decode_video

SPEECH_VIDEOS = (SAMPLE_VIDEO, REPO_ROOT / "samples" / "grid_id2_vcd_swwp2s.mpg")
VGGISH_SECONDS = 20.0


def bench_asr(videos: list) -> list[tuple]:
    """Both recognisers over each sample's real speech; returns (video, words) pairs for the BERT benchmark."""
    audio_s = sum(video.audio.duration_s for video in videos)
    plain = registry.create("words", overrides={"align": False})
    aligned = registry.create("words")
    for words in (plain, aligned):
        words.recognise(videos[0].audio.samples)  # load the models
    plain_s = sum(best_seconds(lambda v=video: plain.recognise(v.audio.samples), repeats=2) for video in videos)
    aligned_s = sum(best_seconds(lambda v=video: aligned.recognise(v.audio.samples), repeats=2) for video in videos)
    results = [(video, aligned.recognise(video.audio.samples, video.audio.start_time_s)) for video in videos]
    words = [word for _, video_words in results for word in video_words]
    emit(bench="asr", videos=[video.path.name for video in videos], audio_s=round(audio_s, 2), words=len(words),
         words_per_video={video.path.name: len(video_words) for video, video_words in results},
         whisper_real_time_factor=round(plain_s / audio_s, 4),
         whisper_plus_alignment_real_time_factor=round(aligned_s / audio_s, 4),
         ratio_aligned_over_whisper_only=round(aligned_s / plain_s, 2),
         aligned_words=sum(word["timing"] == "aligned" for word in words),
         decodings={kind: sum(word["decoding"] == kind for word in words) for kind in ("retried", "dropped_loop")},
         threads=aligned.transcriber.cpu_threads, **shared_clips_word_error_rates(aligned),
         **faster_whisper_transcribe(plain, videos, plain_s))
    return results


def faster_whisper_transcribe(words, videos: list, ours_s: float) -> dict:
    """The baseline: faster-whisper's own ``transcribe`` with the same model (its defaults as affectsync used them
    until regions: beam 5, Silero VAD, word timestamps, no conditioning, its temperature fallback), on the same audio:
    words heard per video and the ratio of its time to ours (Whisper only)."""
    model = words.transcriber.decoder.model

    def transcribe(samples):
        segments, _ = model.transcribe(samples, language="en", beam_size=5, word_timestamps=True, vad_filter=True,
                                       condition_on_previous_text=False)
        return [word for segment in segments for word in segment.words or ()]

    theirs_s = sum(best_seconds(lambda v=video: transcribe(v.audio.samples), repeats=2) for video in videos)
    return {"faster_whisper_transcribe_words_per_video": {video.path.name: len(transcribe(video.audio.samples))
                                                          for video in videos},
            "ratio_faster_whisper_transcribe_over_ours": round(theirs_s / ours_s, 2)}


def shared_clips_word_error_rates(words) -> dict:
    """WER of ``words`` (a `words` extractor) on the six GRID clips and the three LibriVox utterances; None without
    ../shared/media."""
    if not SHARED_MEDIA.is_dir():
        return {"grid_wer": None, "librivox_wer": None}
    rates = {}
    for corpus, clips in (("grid", grid_clips()), ("librivox", librivox_utterances())):
        heard = [" ".join(w["text"] for w in words.recognise(decode_audio(path))) for path in clips]
        rates[f"{corpus}_wer"] = round(word_error_rate(list(clips.values()), heard), 4)
    return rates


def decode_audio(path: Path) -> np.ndarray:
    """16 kHz mono samples of a video or a WAV file (LibriVox utterances have no video)."""
    import librosa

    if path.suffix == ".wav":
        return librosa.load(path, sr=16_000, mono=True)[0]
    return decode_video(path).audio.samples


def bench_bert(results: list[tuple]) -> None:
    from extract.speech.words import frame_word_index

    bert = registry.create("bert")
    inputs = [(video, {"words": words, "word_index": frame_word_index(words, video.frame_time)})
              for video, words in results]
    bert.extract(*inputs[0])  # load the model
    ours_s = best_seconds(lambda: [bert.extract(video, video_inputs) for video, video_inputs in inputs])
    sentences = []
    for _, words in results:
        segments: dict[int, list[str]] = {}
        for word in words:
            segments.setdefault(word["segment"], []).append(word["text"])
        sentences += [" ".join(texts) for texts in segments.values()]

    def plain_forward():
        import torch

        with torch.inference_mode():
            for start in range(0, len(sentences), bert.config.batch_segments):
                batch = bert.tokenizer(sentences[start:start + bert.config.batch_segments], padding=True,
                                       return_tensors="pt")
                bert.model(**batch)

    plain_s = best_seconds(plain_forward)
    frames = sum(video.n_frames for video, _ in results)
    emit(bench="bert", frames=frames, words=sum(len(words) for _, words in results), segments=len(sentences),
         frames_per_s=round(frames / ours_s, 1), seconds=round(ours_s, 4), plain_forward_seconds=round(plain_s, 4),
         ratio_ours_over_plain_forward=round(ours_s / plain_s, 2))


def bench_vggish(sample) -> None:
    import torch
    from torchvggish import vggish_input
    from torchvggish.torchvggish import VGG, make_layers

    video = long_video(sample, VGGISH_SECONDS / 60)
    with tempfile.TemporaryDirectory() as models:
        torch.manual_seed(0)
        torch.save(VGG(make_layers(), postprocess=False).state_dict(), Path(models) / "bench_vggish.pth")
        vggish = registry.create("vggish", models_dir=models,
                                 overrides={"weights_file": "bench_vggish.pth", "postprocess": False})
        model, _ = vggish.model
    ours_s = best_seconds(lambda: vggish.extract(video), repeats=1)

    def torchvggish_framing():
        with torch.inference_mode():
            return model(vggish_input.waveform_to_examples(video.audio.samples, video.audio.sample_rate_hz))

    examples = len(torchvggish_framing())
    theirs_s = best_seconds(torchvggish_framing, repeats=1)
    emit(bench="vggish", audio_s=round(video.audio.duration_s, 2), frames=video.n_frames,
         frames_per_s=round(video.n_frames / ours_s, 1), x_real_time=round(video.audio.duration_s / ours_s, 2),
         torchvggish_windows=examples, torchvggish_windows_per_s=round(examples / theirs_s, 1),
         ratio_per_window_ours_over_torchvggish=round((ours_s / video.n_frames) / (theirs_s / examples), 2),
         threads=torch.get_num_threads())


def main() -> int:
    videos = [decode_video(path) for path in SPEECH_VIDEOS]
    bench_bert(bench_asr(videos))
    bench_vggish(videos[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Speech and language features: ASR words with aligned times (``words``), BERT word vectors (``bert``), VGGish."""

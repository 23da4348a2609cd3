"""The visual half: face detection, tracking and subject selection (alignment, landmarks and embeddings follow)."""

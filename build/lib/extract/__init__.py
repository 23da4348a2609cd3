"""affectsync extractors: videos -> frame-synchronized features in a Zarr store (``python -m extract``)."""

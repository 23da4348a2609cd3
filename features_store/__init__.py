"""affectsync feature store: Zarr v3 groups per video with provenance (``python -m features_store``).

Consumers need only this package, zarr and numpy: nothing here imports the extractors.
"""

from features_store.store import FeatureStore, StoreError, VideoGroup

__all__ = ["FeatureStore", "StoreError", "VideoGroup"]

"""affectsync feature store: Zarr v3 groups per video with provenance (``python -m features_store``).

Consumers need only this package, zarr, numpy and dask: nothing here imports the extractors::

    import features_store
    store = features_store.open("s3://bucket/affwild2.zarr")
    vggish = store.video("video1").dask("vggish")        # lazy, per video
    mean = store.dask("vggish").mean(axis=0).compute()   # a whole feature across videos
    frame_table = features_store.to_dataframe(store, "video1")  # one row per frame (pandas)
"""

from features_store.store import FeatureStore, StoreError, VideoGroup
from features_store.tables import to_dataframe


def open(location: str, mode: str = "r") -> FeatureStore:  # noqa: A001  (features_store.open, like zarr.open)
    """The store at ``location`` (a path or fsspec URL such as ``s3://bucket/store.zarr``); ``mode="r"`` (the
    default) cannot modify it, ``"a"`` creates it if needed and writes."""
    return FeatureStore(location, mode=mode)


__all__ = ["FeatureStore", "StoreError", "VideoGroup", "open", "to_dataframe"]

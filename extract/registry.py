"""Maps feature names (as written in ``--features`` / ``FEATURES=``) to extractor classes."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from extract.base import Extractor

_REGISTRY: dict[str, type[Extractor]] = {}


def register(cls: type[Extractor]) -> type[Extractor]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"feature name {cls.name!r} is registered twice: {_REGISTRY[cls.name]} and {cls}")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtin() -> None:
    import extract.audio  # noqa: F401  (registers the audio extractors)
    import extract.faces.extractor  # noqa: F401  (registers the face extractors)
    import extract.faces.expression  # noqa: F401  (registers the face embeddings)
    import extract.faces.identity  # noqa: F401


def feature_names(offline_only: bool = False) -> list[str]:
    """Registered feature names, in registration order; ``offline_only`` keeps those needing no user weights."""
    _load_builtin()
    return [name for name, cls in _REGISTRY.items() if cls.offline or not offline_only]


def with_requirements(names: Sequence[str]) -> list[str]:
    """``names`` plus the features they are computed from, each requirement before the features needing it."""
    _load_builtin()
    ordered: list[str] = []

    def add(name: str) -> None:
        if name in ordered:
            return
        if name not in _REGISTRY:
            raise ValueError(f"unknown feature {name!r}; known features: {', '.join(_REGISTRY)}")
        for required in _REGISTRY[name].requires:
            add(required)
        ordered.append(name)

    for name in names:
        add(name)
    return ordered


def create(name: str, **settings) -> Extractor:
    """An extractor for feature ``name`` with its default config, except ``settings`` for the config fields it has
    (e.g. ``subject`` for the face features); ValueError lists the known names."""
    _load_builtin()
    if name not in _REGISTRY:
        raise ValueError(f"unknown feature {name!r}; known features: {', '.join(_REGISTRY)}")
    cls = _REGISTRY[name]
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    return cls(cls.config_class(**{key: value for key, value in settings.items() if key in fields}))

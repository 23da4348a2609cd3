"""Maps feature names (as written in ``--features`` / ``FEATURES=``) to extractors.

Most features are one registered class each. A *family* is a prefix whose members are configured at run time:
``onnx:<name>`` is the ONNX face model configured by ``<name>.json`` in the models search path.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from extract.base import Extractor

_REGISTRY: dict[str, type[Extractor]] = {}
_FAMILIES: dict[str, tuple[Callable[..., Extractor], type[Extractor]]] = {}


def register(cls: type[Extractor]) -> type[Extractor]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"feature name {cls.name!r} is registered twice: {_REGISTRY[cls.name]} and {cls}")
    _REGISTRY[cls.name] = cls
    return cls


def register_family(prefix: str, base: type[Extractor]):
    """Decorator of ``factory(member_name, models_dir=None, **settings) -> Extractor``: serves ``<prefix>:<member>``
    with extractors of class ``base`` (whose ``requires`` the members share)."""
    def decorate(factory: Callable[..., Extractor]) -> Callable[..., Extractor]:
        _FAMILIES[prefix] = (factory, base)
        return factory
    return decorate


def _load_builtin() -> None:
    import extract.audio  # noqa: F401  (registers the audio extractors)
    import extract.faces.extractor  # noqa: F401  (registers face_crop)
    import extract.faces.expression  # noqa: F401  (registers the offline face embeddings)
    import extract.faces.identity  # noqa: F401
    import extract.faces.senet  # noqa: F401  (the face embeddings whose weights users bring)
    import extract.faces.onnx_models  # noqa: F401  (iresnet, hsemotion and the onnx:<name> family)
    import extract.faces.facenet  # noqa: F401
    import extract.speech.words  # noqa: F401  (words, bert, vggish)
    import extract.speech.bert  # noqa: F401
    import extract.speech.vggish  # noqa: F401


def feature_names(offline_only: bool = False) -> list[str]:
    """Registered feature names, in registration order; ``offline_only`` keeps those needing no user weights."""
    _load_builtin()
    return [name for name, cls in _REGISTRY.items() if cls.offline or not offline_only]


def family_prefixes() -> list[str]:
    """The prefixes of feature families (``onnx`` for ``onnx:<name>``)."""
    _load_builtin()
    return list(_FAMILIES)


def _unknown(name: str) -> ValueError:
    families = ", ".join(f"{prefix}:<name>" for prefix in _FAMILIES)
    return ValueError(f"unknown feature {name!r}; known features: {', '.join(_REGISTRY)}, {families}")


def _family(name: str) -> tuple[Callable[..., Extractor], type[Extractor], str] | None:
    prefix, colon, member = name.partition(":")
    if colon and member and prefix in _FAMILIES:
        return (*_FAMILIES[prefix], member)
    return None


def requirements_of(name: str) -> tuple[str, ...]:
    """The features ``name`` is computed from."""
    _load_builtin()
    if name in _REGISTRY:
        return _REGISTRY[name].requires
    family = _family(name)
    if family is None:
        raise _unknown(name)
    return family[1].requires


def with_requirements(names: Sequence[str]) -> list[str]:
    """``names`` plus the features they are computed from, each requirement before the features needing it."""
    ordered: list[str] = []

    def add(name: str) -> None:
        if name in ordered:
            return
        for required in requirements_of(name):
            add(required)
        ordered.append(name)

    for name in names:
        add(name)
    return ordered


def parse_setting(text: str) -> tuple[str, str, Any]:
    """``FEATURE.FIELD=VALUE`` (a ``--set`` argument) -> (feature, field, value); VALUE is read as JSON when it is
    (numbers, true/false, null, lists become tuples), else as a string."""
    key, equals, raw = text.partition("=")
    feature, dot, field = key.rpartition(".")
    if not (equals and dot and feature and field):
        raise ValueError(f"--set {text!r}: expected FEATURE.FIELD=VALUE, e.g. face_crop.crop_size_px=128")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return feature, field, tuple(value) if isinstance(value, list) else value


def with_overrides(config: Any, overrides: Mapping[str, Any] | None, feature: str) -> Any:
    """``config`` (a dataclass) with ``overrides`` (``--set`` values) replacing fields; a key that is not a field is
    a ValueError naming the fields there are."""
    if not overrides:
        return config
    fields = {f.name for f in dataclasses.fields(config)}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"{feature} has no setting {', '.join(sorted(unknown))}; its settings: "
                         f"{', '.join(sorted(fields))}")
    return dataclasses.replace(config, **overrides)


def create(name: str, models_dir: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
           **settings) -> Extractor:
    """An extractor for feature ``name`` with its default config, except ``settings`` for the config fields it has
    (e.g. ``subject`` for the face features) and ``overrides`` (``--set``: every key must be a config field); user
    weights are looked up with ``models_dir`` first (see :func:`extract.weights.models_search_path`). ValueError
    lists the known names."""
    _load_builtin()
    if name not in _REGISTRY:
        family = _family(name)
        if family is None:
            raise _unknown(name)
        factory, _, member = family
        return factory(member, models_dir=models_dir, overrides=overrides or {})
    cls = _REGISTRY[name]
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    config = cls.config_class(**{key: value for key, value in settings.items() if key in fields})
    return cls(with_overrides(config, overrides, name), models_dir=models_dir)

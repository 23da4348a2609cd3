"""Maps feature names (as written in ``--features`` / ``FEATURES=``) to extractors.

The registry sits below what it registers: each extractor module imports :func:`register` and registers its classes
when imported; the package (``extract/__init__.py``) imports the built-in ones, so any ``import extract...`` sees them
all (lhotse's ``features/__init__.py`` does the same). Most features are one registered class each. A *family* is a
prefix whose members are configured at run time: ``onnx:<name>`` is the ONNX face model configured by ``<name>.json``
in the models search path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from extract.base import STORAGE_DTYPES, Extractor
from features_store.cli import parse_assignment
from features_store.errors import UsageError

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


def feature_names(offline_only: bool = False) -> list[str]:
    """Registered feature names, in registration order; ``offline_only`` keeps those needing no user weights."""
    return [name for name, cls in _REGISTRY.items() if cls.offline or not offline_only]


def family_prefixes() -> list[str]:
    """The prefixes of feature families (``onnx`` for ``onnx:<name>``)."""
    return list(_FAMILIES)


def _unknown(name: str) -> UsageError:
    families = ", ".join(f"{prefix}:<name>" for prefix in _FAMILIES)
    return UsageError(f"unknown feature {name!r}; known features: {', '.join(_REGISTRY)}, {families}")


def _family(name: str) -> tuple[Callable[..., Extractor], type[Extractor], str] | None:
    prefix, colon, member = name.partition(":")
    if colon and member and prefix in _FAMILIES:
        return (*_FAMILIES[prefix], member)
    return None


def requirements_of(name: str) -> tuple[str, ...]:
    """The features ``name`` is computed from."""
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
    example = "face_crop.crop_size_px=128"
    key, value = parse_assignment(text, "FEATURE.FIELD=VALUE", example)
    feature, dot, field = key.rpartition(".")
    if not (dot and feature and field):
        raise UsageError(f"--set {text!r}: expected FEATURE.FIELD=VALUE, e.g. {example}")
    return feature, field, value


def with_overrides(config: Any, overrides: Mapping[str, Any] | None, feature: str) -> Any:
    """``config`` (a dataclass) with ``overrides`` (``--set`` values) replacing fields; a key that is not a field, or
    a value of another kind than the field's default (a number for a number, true/false for a flag, text for text), is
    a :class:`~features_store.errors.UsageError` naming the fields there are or the kind expected."""
    if not overrides:
        return config
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    unknown = set(overrides) - set(fields)
    if unknown:
        raise UsageError(f"{feature} has no setting {', '.join(sorted(unknown))}; its settings: "
                         f"{', '.join(sorted(fields))}")
    return dataclasses.replace(config, **{name: _checked_value(feature, name, fields[name], value)
                                          for name, value in overrides.items()})


_KINDS = {bool: (bool,), int: (int,), float: (int, float), str: (str,), tuple: (tuple,)}
"""The kind of a field's default -> the kinds of value a ``--set`` may give it."""


def _checked_value(feature: str, name: str, default: Any, value: Any) -> Any:
    """``value`` for a field whose default is ``default``: of the same kind (floats also take integers, never
    true/false); fields without a default (None) or of other kinds take any value."""
    kind = type(default)
    if default is None or kind not in _KINDS:
        return value
    if isinstance(value, bool) and kind is not bool or not isinstance(value, _KINDS[kind]):
        raise UsageError(f"--set {feature}.{name}={value!r}: expected {kind.__name__} (the default is {default!r})")
    return float(value) if kind is float else value


def create(name: str, models_dir: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
           **settings) -> Extractor:
    """An extractor for feature ``name`` with its default config, except ``settings`` for the config fields it has
    (e.g. ``subject`` for the face features) and ``overrides`` (``--set``: every key must be a config field); user
    weights are looked up with ``models_dir`` first (see :func:`extract.weights.models_search_path`). An unknown
    name is a :class:`~features_store.errors.UsageError` listing the known ones. ``dtype`` among the overrides is
    the feature's storage dtype (:data:`extract.base.STORAGE_DTYPES`) unless its config has a field of that name."""
    overrides = dict(overrides or {})
    if name not in _REGISTRY:
        family = _family(name)
        if family is None:
            raise _unknown(name)
        factory, cls, member = family
        storage_dtype = _storage_dtype(name, cls, overrides)
        extractor = factory(member, models_dir=models_dir, overrides=overrides)
    else:
        cls = _REGISTRY[name]
        storage_dtype = _storage_dtype(name, cls, overrides)
        fields = {f.name for f in dataclasses.fields(cls.config_class)}
        config = cls.config_class(**{key: value for key, value in settings.items() if key in fields})
        extractor = cls(with_overrides(config, overrides, name), models_dir=models_dir)
    extractor.storage_dtype = storage_dtype
    return extractor


def _storage_dtype(name: str, cls: type[Extractor], overrides: dict[str, Any]) -> str:
    """The storage dtype ``--set NAME.dtype=...`` chose (removed from ``overrides``), else float32."""
    if "dtype" in {f.name for f in dataclasses.fields(cls.config_class)} or "dtype" not in overrides:
        return Extractor.storage_dtype
    dtype = overrides.pop("dtype")
    if dtype not in STORAGE_DTYPES:
        raise UsageError(f"--set {name}.dtype={dtype!r}: a feature is stored as one of {', '.join(STORAGE_DTYPES)}")
    return dtype

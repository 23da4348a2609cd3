"""A feature's recipe: its provenance without what changes from one run of the same recipe to the next (when it was
made). Two arrays with one recipe were made by the same extractor, version, parameters and weights; merges refuse
to mix recipes, and a trained model refuses features made by another recipe than the one it was trained on."""

from __future__ import annotations

from typing import Any

RECIPE_IGNORED_KEYS = ("created_utc",)
"""Provenance keys that differ between two runs of the same recipe."""
LIBRARY_KEYS = ("libraries",)
"""Recipe keys that say which library versions ran it: a model meets features made with other versions of numpy or
affectsync all the time, so consumers compare recipes without them (the extractor's ``version`` says when outputs
change) and only mention them."""


def recipe(provenance: dict[str, Any] | None) -> dict[str, Any]:
    """The provenance without the keys that change from run to run (when it was made)."""
    return {key: value for key, value in (provenance or {}).items() if key not in RECIPE_IGNORED_KEYS}


def differing_keys(expected: Any, found: Any, path: str = "", ignore: tuple[str, ...] = LIBRARY_KEYS) -> list[str]:
    """Dotted paths (``parameters.window_s``, ``weights.sha256``) where two recipes differ, depth first; top-level
    keys in ``ignore`` (by default the library versions) are not compared."""
    if not path and isinstance(expected, dict) and isinstance(found, dict):
        expected = {key: value for key, value in expected.items() if key not in ignore}
        found = {key: value for key, value in found.items() if key not in ignore}
    if isinstance(expected, dict) and isinstance(found, dict):
        return [key for name in sorted(set(expected) | set(found), key=str)
                for key in differing_keys(expected.get(name), found.get(name), f"{path}.{name}" if path else str(name),
                                          ignore)]
    return [] if expected == found else [path or "(the whole recipe)"]

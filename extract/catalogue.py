"""What weights every extractor needs and whether they are here: the table behind ``python -m extract models``.

One row per weights file per feature: found or missing, the path it resolved to, its sha256 (the file's when found,
the pinned one when missing), where it comes from and its license. ``onnx:<name>`` members are the ``<name>.json``
configs found in the models search path. The trunk networks' pretrained weights (:data:`extract.sources.TRUNK_WEIGHTS`)
follow as ``train:<model>`` rows whose role is the training setting that takes the file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from extract import registry
from extract.weights import WeightsError, models_search_path, trunk_weights


def onnx_configs(models_dir: str | Path | None = None) -> list[str]:
    """``onnx:<name>`` for every ``<name>.json`` in the models search path (first folder wins on a name)."""
    names: dict[str, None] = {}
    for folder in models_search_path(models_dir):
        if folder.is_dir():
            names.update(dict.fromkeys(sorted(path.stem for path in folder.glob("*.json"))))
    return [f"onnx:{name}" for name in names]


def weights_table(models_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Rows of ``feature, role, found, file, path, sha256, source, license, problem`` (see the module docstring),
    plus ``download`` (the URL ``models fetch`` uses; None: none public or packaged) and ``non_commercial``."""
    rows = []
    for feature in registry.feature_names() + onnx_configs(models_dir):
        try:
            extractor = registry.create(feature, models_dir=models_dir)
        except WeightsError as exc:  # an onnx:<name> config that cannot be read
            rows.append({"feature": feature, "role": "config", "found": False, "file": f"{feature[5:]}.json",
                         "path": None, "sha256": None, "source": "", "license": "", "problem": str(exc)})
            continue
        for role, bundle in extractor.weights().items():
            rows.append(_row(feature, role, bundle, extractor.models_search_path))
    for model, bundles in trunk_weights().items():
        rows += [_row(model, role, bundle, models_search_path(models_dir)) for role, bundle in bundles.items()]
    return rows


def _row(feature: str, role: str, bundle, search_path) -> dict[str, Any]:
    status = bundle.status(search_path)
    source = getattr(bundle, "download", None)
    return {"feature": feature, "role": role, **dataclasses.asdict(status),
            "download": None if source is None else getattr(source, "urls", (source.file_name,))[0],
            "non_commercial": getattr(bundle, "non_commercial", False)}


def format_table(rows: list[dict[str, Any]], search_path: tuple[Path, ...]) -> str:
    """The rows as aligned text lines, then the search path and what to do about missing files."""
    lines = [f"{'feature':<15} {'status':<8} {'file':<46} sha256"]
    for row in rows:
        sha = row["sha256"] or "(recorded when first used)"
        lines.append(f"{row['feature']:<15} {'found' if row['found'] else 'MISSING':<8} {row['file']:<46} {sha}")
        lines.append(f"{'':<15} {'':<8} path: {row['path'] or '-'}")
        lines.append(f"{'':<15} {'':<8} source: {row['source']}; license: {row['license']}")
    missing = sum(not row["found"] for row in rows)
    lines.append(f"models search path: {', '.join(str(p.resolve()) for p in search_path)} "
                 f"(--models DIR, then $AFFECTSYNC_MODELS, then models/)")
    if missing:
        features = ",".join(dict.fromkeys(row["feature"] for row in rows if not row["found"]))
        lines.append(f"{missing} file(s) missing: `make weights FEATURES={features}` fetches those with a public "
                     "download (--accept-license NAME for non-commercial ones); put the others in the first folder "
                     "of the search path")
    return "\n".join(lines)

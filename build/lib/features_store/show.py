"""A contact sheet of one video's faces over time: what a person checks before trusting the face features.

Top: aligned crops at evenly spaced frames with the 68 landmarks and TSAV's mask overlaid (frames without a face are
shown as such, not as a black face). Below, over the whole video: the ``face_valid`` strip and, when present, the
``fer`` probabilities as a heat strip. Needs matplotlib (imported here only).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from features_store.store import StoreError, VideoGroup


def contact_sheet(video: VideoGroup, out: Path, n_columns: int = 10) -> Path:
    """Write the sheet of ``video`` as a PNG at ``out``; needs its ``face_crop`` (and uses landmarks68, face_mask,
    fer when stored)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = set(video.array_names())
    if "face_crop" not in names:
        raise StoreError(f"video {video.video_id!r} has no face_crop (extract it with --features face_crop)")
    frame_time = video.read("frame_time")
    valid = video.read("face_valid")
    picks = np.unique(np.linspace(0, len(valid) - 1, min(n_columns, len(valid))).round().astype(int))
    crops = video.array("face_crop")
    has_fer = "fer" in names
    rows = 2 + has_fer
    figure = plt.figure(figsize=(1.6 * len(picks), 2.2 + 0.6 * rows), constrained_layout=True)
    grid = figure.add_gridspec(rows, len(picks), height_ratios=[4, 0.5] + [1.4] * has_fer)
    for column, frame in enumerate(picks):
        axes = figure.add_subplot(grid[0, column])
        axes.set_axis_off()
        axes.set_title(f"{frame_time[frame]:.2f} s", fontsize=8)
        if not valid[frame]:
            axes.text(0.5, 0.5, "no face", ha="center", va="center", transform=axes.transAxes, fontsize=9)
            continue
        image = np.array(crops[int(frame)])
        if "face_mask" in names:
            mask = video.array("face_mask")[int(frame)] > 0
            image[mask] = (255, 64, 64)
        axes.imshow(image)
        if "landmarks68" in names:
            points = video.array("landmarks68")[int(frame)]
            axes.scatter(points[:, 0], points[:, 1], s=2, c="yellow")
            axes.set_xlim(-0.5, image.shape[1] - 0.5)
            axes.set_ylim(image.shape[0] - 0.5, -0.5)
    strip = figure.add_subplot(grid[1, :])
    strip.imshow(valid[None, :].astype(float), aspect="auto", cmap="RdYlGn", vmin=0, vmax=1,
                 extent=(frame_time[0], frame_time[-1], 0, 1))
    strip.set_yticks([])
    strip.set_ylabel("face", rotation=0, ha="right", va="center", fontsize=8)
    strip.set_title(f"face_valid: {valid.mean():.1%} of {len(valid)} frames", fontsize=8)
    if has_fer:
        heat = figure.add_subplot(grid[2, :], sharex=strip)
        classes = dict(video.array("fer").attrs).get("columns") or [str(i) for i in range(7)]
        heat.imshow(video.read("fer").T, aspect="auto", cmap="magma", vmin=0, vmax=1, interpolation="nearest",
                    extent=(frame_time[0], frame_time[-1], len(classes) - 0.5, -0.5))
        heat.set_yticks(range(len(classes)), classes, fontsize=7)
        heat.set_xlabel("time (s)")
    figure.suptitle(f"{video.video_id}: aligned faces over time", fontsize=10)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out

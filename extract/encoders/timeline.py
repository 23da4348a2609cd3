"""Where an audio encoder's output rows lie in time, and how they are averaged onto video frames.

A :class:`RowGrid` says which samples each output row was computed from: row j is centred on sample
``first_centre + j * hop`` and covers ``+/- half_span`` samples (the receptive field of the encoder's convolutional
front end, from the model's own layer sizes). Frame i gets the mean of the rows whose span overlaps the window of one
frame interval centred on ``frame_time[i]`` (:func:`frame_row_ranges`); :class:`FrameAverager` accumulates those means
as blocks of rows arrive, so a long track never holds all its rows at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ConvLayer:
    """A 1-D convolution along time: kernel, stride and padding in its input's steps."""

    kernel: int
    stride: int
    padding: int = 0


@dataclass(frozen=True)
class RowGrid:
    """Output row j of an encoder is centred on input sample ``first_centre_samples + j * hop_samples`` and covers
    ``+/- half_span_samples`` (its receptive field). ``padded``: the encoder pads its input, so rows go on while their
    centre is inside the input (Whisper); otherwise a row exists only where its whole span is (wav2vec2's convs)."""

    hop_samples: int
    first_centre_samples: float
    half_span_samples: float
    padded: bool = False

    @classmethod
    def of_convs(cls, layers: Sequence[ConvLayer], input_hop_samples: int = 1, input_centre_samples: float = 0.0,
                 input_half_span_samples: float = 0.5, padded: bool = False) -> RowGrid:
        """The grid after ``layers`` applied in order to an input whose step n is centred on sample
        ``input_centre + n * input_hop`` and covers ``+/- input_half_span`` (raw audio: step n is sample n, at time
        n / rate, standing for half a sample either side)."""
        hop, centre, half_span = input_hop_samples, float(input_centre_samples), float(input_half_span_samples)
        for layer in layers:
            centre += (-layer.padding + (layer.kernel - 1) / 2) * hop
            half_span += (layer.kernel - 1) / 2 * hop
            hop *= layer.stride
        return cls(hop, centre, half_span, padded)

    def n_rows(self, n_samples: int) -> int:
        """Rows the encoder gives for ``n_samples`` input samples."""
        if self.padded:
            return max(0, math.ceil((n_samples - self.first_centre_samples) / self.hop_samples))
        return max(0, math.floor((n_samples - self.first_centre_samples - self.half_span_samples) / self.hop_samples)
                   + 1)

    def centres_samples(self, rows: np.ndarray) -> np.ndarray:
        return self.first_centre_samples + np.asarray(rows, np.float64) * self.hop_samples

    def describe(self, sample_rate_hz: int) -> dict[str, float]:
        """The grid in seconds, for the array's attributes."""
        return {"row_hop_s": self.hop_samples / sample_rate_hz,
                "row_span_s": 2 * self.half_span_samples / sample_rate_hz,
                "first_row_centre_s": self.first_centre_samples / sample_rate_hz}


def frame_row_ranges(grid: RowGrid, n_rows: int, frame_centre_samples: np.ndarray,
                     frame_width_samples: float) -> tuple[np.ndarray, np.ndarray]:
    """(first, stop) row per frame: the rows whose span overlaps the frame's window (``frame_width_samples`` wide,
    centred on ``frame_centre_samples``, both counted from the encoder input's first sample). A frame whose window
    overlaps no row (narrower spans than hops, or past the last row) gets its nearest row; with no rows at all every
    range is empty."""
    centres = np.asarray(frame_centre_samples, np.float64)
    if n_rows == 0:
        empty = np.zeros(len(centres), np.int64)
        return empty, empty
    reach = frame_width_samples / 2 + grid.half_span_samples  # a row overlaps when its centre is closer than this
    first = np.floor((centres - reach - grid.first_centre_samples) / grid.hop_samples).astype(np.int64) + 1
    stop = np.ceil((centres + reach - grid.first_centre_samples) / grid.hop_samples).astype(np.int64)
    first, stop = np.clip(first, 0, n_rows), np.clip(stop, 0, n_rows)
    nearest = np.clip(np.rint((centres - grid.first_centre_samples) / grid.hop_samples), 0, n_rows - 1).astype(np.int64)
    none = stop <= first
    first[none], stop[none] = nearest[none], nearest[none] + 1
    return first, stop


class FrameAverager:
    """Per-frame means of rows that arrive in consecutive blocks (any block sizes, in row order)."""

    def __init__(self, first: np.ndarray, stop: np.ndarray, width: int):
        self.first, self.stop = first, stop
        self.sums = np.zeros((len(first), width), np.float32)  # the output's size, no more

    def add(self, start_row: int, rows: np.ndarray) -> None:
        """Rows ``start_row ... start_row + len(rows) - 1`` (len, width): each is added to the frames whose range
        holds it."""
        end_row = start_row + len(rows)
        frames = np.flatnonzero((self.first < end_row) & (self.stop > start_row))
        if not len(frames):
            return
        cumulative = np.concatenate([np.zeros((1, rows.shape[1])), np.cumsum(rows, axis=0, dtype=np.float64)])
        low = np.clip(self.first[frames], start_row, end_row) - start_row
        high = np.clip(self.stop[frames], start_row, end_row) - start_row
        self.sums[frames] += (cumulative[high] - cumulative[low]).astype(np.float32)

    def means(self) -> np.ndarray:
        """(T, width) float32, once every row has arrived (the sums become the means, in place); frames with an empty
        range are zeros."""
        counts = np.maximum(self.stop - self.first, 1)[:, None]
        self.sums /= counts
        return self.sums

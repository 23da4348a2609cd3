"""How every benchmark times and reports: the best of a few wall-clock timings, and one JSON object per line."""

from __future__ import annotations

import json
import time

REPEATS = 3


def best_seconds(function, repeats: int = REPEATS) -> float:
    """The fastest of ``repeats`` wall-clock timings of ``function()``, in seconds."""
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        timings.append(time.perf_counter() - start)
    return min(timings)


def emit(**record) -> None:
    """Print ``record`` as one JSON line (``make bench`` keeps them in bench/results/)."""
    print(json.dumps(record), flush=True)

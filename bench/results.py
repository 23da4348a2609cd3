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


def best_seconds_interleaved(functions: dict, rounds: int = 3, repeats: int = REPEATS) -> dict:
    """Name -> the fastest timing of each of ``functions`` (name -> callable), measured in ``rounds`` rounds that take
    turns, so that a slow spell of the machine does not fall on one of them only."""
    best: dict = {}
    for _ in range(rounds):
        for name, function in functions.items():
            best[name] = min(best.get(name, float("inf")), best_seconds(function, repeats))
    return best


def emit(**record) -> None:
    """Print ``record`` as one JSON line (``make bench`` keeps them in bench/results/)."""
    print(json.dumps(record), flush=True)

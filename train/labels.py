"""Labels live in :mod:`eval.labels` (the protocol, below the trainer); this name is kept for code written against
``train.labels``."""

from eval.labels import *  # noqa: F401,F403

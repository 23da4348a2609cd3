"""The ABAW tasks live in :mod:`eval.tasks` (the protocol, below the trainer); this name is kept for code written
against ``train.tasks``."""

from eval.tasks import *  # noqa: F401,F403
from eval.tasks import __all__  # noqa: F401

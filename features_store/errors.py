"""The root of every error affectsync raises on purpose.

:class:`AffectsyncError` carries one line that names the file, video, feature or setting and the cause; every command
(``python -m extract``, ``features_store``, ``train``, ``eval``) prints it as ``<prog>: <cause>`` and exits with
status 2. Each error keeps the built-in base it had (``ValueError``, ``RuntimeError``, ``FileNotFoundError``), so
code catching those still works. Anything else that escapes is a bug, and keeps its traceback.
"""

from __future__ import annotations


class AffectsyncError(Exception):
    """An error affectsync raises on purpose; its message is one line, fit to show a user."""


class OutOfMemory(AffectsyncError, MemoryError):
    """A batched model call ran out of memory (GPU or host); the message names the setting to lower."""


class UsageError(AffectsyncError, ValueError):
    """A command line or setting that cannot be used: an unknown feature, model or setting, a malformed
    ``KEY=VALUE``, a missing argument."""

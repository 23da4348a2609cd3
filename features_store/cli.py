"""What every command line of affectsync shares: misuse and errors as one line ``<prog>: <cause>`` with exit status 2
(:func:`run_command`, :class:`ArgumentParser`), and one reading of ``KEY=VALUE`` arguments
(:func:`parse_assignment`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from features_store.errors import AffectsyncError, UsageError

USAGE_EXIT_CODE = 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose misuse errors are :class:`UsageError` (one line, like every other error), not usage dumps."""

    def error(self, message: str):  # noqa: D102  (argparse's hook)
        raise UsageError(f"{message} (see --help)")


def run_command(prog: str, main: Callable[[list[str]], int], argv: Sequence[str] | None = None) -> int:
    """``main(argv)``'s exit status; an :class:`AffectsyncError` becomes ``<prog>: <cause>`` on stderr and status 2."""
    try:
        return main(list(sys.argv[1:] if argv is None else argv))
    except AffectsyncError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return USAGE_EXIT_CODE


def parse_assignment(text: str, what: str = "KEY=VALUE", example: str = "", as_json: bool = True) -> tuple[str, Any]:
    """``KEY=VALUE`` -> (key, value). With ``as_json`` the value is read as JSON when it is one (numbers, true/false,
    null; lists become tuples), else kept as text. :class:`UsageError` names ``what`` was expected."""
    key, equals, raw = text.partition("=")
    if not (equals and key.strip()):
        hint = f", e.g. {example}" if example else ""
        raise UsageError(f"{text!r}: expected {what}{hint}")
    if not as_json:
        return key.strip(), raw
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip(), tuple(value) if isinstance(value, list) else value

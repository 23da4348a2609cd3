"""CLI placeholder until issue #4 (official ABAW metrics, fold fusion, plots)."""

from __future__ import annotations

import sys


def main() -> int:
    print("eval: no metrics yet; the official ABAW metrics, fold fusion and plots arrive with issue #4",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

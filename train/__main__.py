"""CLI placeholder until issue #3: says what a store holds for training and that no trainer exists yet."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train", description="Train sequence models on a feature store.")
    parser.add_argument("--store", default="stores/sample.zarr")
    parser.add_argument("--features", default="")
    parser.parse_args(argv)
    print("train: no trainer yet; the GRU/TCN/attention models arrive with issue #3 "
          "(features are ready in the store: python -m features_store info STORE)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""affectsync evaluation: official ABAW metrics, fold fusion, plots (``python -m eval``); arrives with issue #4."""

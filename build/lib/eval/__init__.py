"""affectsync evaluation (``python -m eval``): official ABAW metrics, fold fusion, submission files, reports."""

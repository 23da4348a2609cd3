"""affectsync training over cached features (``python -m train``); the models arrive with issue #3."""

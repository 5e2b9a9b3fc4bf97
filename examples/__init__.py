"""Runnable examples (``python examples/train_dit.py``); a package so the tests can import them."""

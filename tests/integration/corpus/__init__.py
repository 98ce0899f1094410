"""Test corpora kept as data (see differential.py)."""

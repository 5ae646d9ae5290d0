"""Validity of the metrics: planted cases built from real reviews (planted.py, validate.py) and
the hand-labelled gold set (gold.py). Unlike the scorers these read task data."""

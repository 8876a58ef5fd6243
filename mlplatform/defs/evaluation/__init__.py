"""Holdout evaluation and its report."""

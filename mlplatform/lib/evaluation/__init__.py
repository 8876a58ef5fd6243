"""Models out: training-side evaluation report, its metrics and plots."""

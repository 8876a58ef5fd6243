"""The train/holdout split and the feature pipeline."""

"""The model registry (model versions and the champion pointer) and the promotion gate."""

"""What the prediction service shares with training: the predictor, micro-batching, the token check and the
prediction log."""

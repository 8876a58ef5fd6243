"""Data quality: the rules and their Great Expectations run, the learned profile, the features check and the
leakage scan."""

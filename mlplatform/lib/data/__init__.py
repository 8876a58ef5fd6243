"""Raw data in: reading sources, the batch ledger, index columns, the inferred schema, cleaning, synthetic data."""

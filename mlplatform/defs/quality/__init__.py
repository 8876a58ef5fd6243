"""Data-quality gates (Great Expectations) and the profile they learn from the accepted data."""

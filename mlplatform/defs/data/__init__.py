"""Raw data in, cleaned data out."""

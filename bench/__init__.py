"""The benchmarks: each script compares the platform with a baseline measured in the same run (README.md)."""

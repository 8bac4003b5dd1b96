"""The benchmark tools; run them from the repository's root as modules (`python -m bench.bench`), docs/benchmarks.md."""

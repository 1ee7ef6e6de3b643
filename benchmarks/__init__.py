"""One module per family, each declaring its benchmarks to the harness registry."""

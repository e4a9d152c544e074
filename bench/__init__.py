"""The load benchmark: `make bench` or `python -m bench.run --help`. See docs/PERFORMANCE.md."""

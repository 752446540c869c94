"""The project's benchmark (issue 7): `make bench` = `python -m benchmarks.run`; see docs/benchmarks.md."""

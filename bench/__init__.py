"""Benchmarks (DESIGN §7): `python -m bench` (= `make bench`) runs them all; each prints what it
compares, the machine, medians over repeated runs after warm-up, and its ratios against a reference
measured in the same run. Numbers measured so far: bench/README.md."""

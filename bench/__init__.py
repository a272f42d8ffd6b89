"""Benchmarks (``make bench-stt`` → ``python -m bench.stt_bench``); not part of the test suite."""

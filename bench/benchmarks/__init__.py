"""Benchmark modules; each registers its benchmarks with `bench.harness.benchmark`."""

"""Simulation for tests, benchmarks and the demo: the virtual musician, duets, the demo."""

"""Synthetic scenes, tiny checkpoint writers, local services and the demo.

Everything here exists to run the real code paths without real data or weights (tests, the demo, benchmarks).
Training, evaluation and serving never import this package.
"""

"""Helpers shared by tests and benchmarks: paths, map specs, synthetic plans, the server harness.

Import them by their full name (``from tests.support.specs import subregion_spec``).
"""

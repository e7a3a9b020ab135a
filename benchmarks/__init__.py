"""Benchmarks on the real stack (control plane, ``kubegate server``, ``kubegate agent``).

Not tests: they measure and report, and assert only that what they measured happened
(``make bench``; results in ``docs/benchmarks.json`` and ``docs/benchmarks.md``).
"""

"""Pieces of the sync benchmarks: warehouse generation, HTTP sinks, the case registry and the runners.

``bench/bench_events.py`` is the command; everything it needs lives here in small modules so that new
cases (customers sync, Engage diff) plug into :mod:`benchkit.cases` without touching the rest.
"""

"""Latency benchmarking: timing harness, statistics, result files, reports and A/B comparison.

Modules (import the one you need; none imports torch, onnxruntime or matplotlib at import time):

- ``timer``: warm-up by time, bounded measurement, named stages, peak memory.
- ``stats``: summaries (median, p90/p95/p99, CV), the asv-style regression rule.
- ``schema``: the bench result JSON format (``schema_version`` 1): validate, load, dump.
- ``env``: describe the machine (CPU, GPU, packages, thread variables); never fails.
- ``compare``: match two result files, verdict per pair, JUnit XML, interleaved A/B runs.
- ``report``: rich summary table and a Markdown report with plots.
"""

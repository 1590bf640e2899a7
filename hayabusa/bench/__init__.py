"""Benchmarks: problems, timing, tables and JSON (``hayabusa bench``)."""

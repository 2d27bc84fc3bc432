"""Benchmarks the field reports, run and scored exactly as their own code does: PIE-Bench
(:mod:`cyclediff.bench.pie_bench`: data and rules; :mod:`cyclediff.bench.score`: the metrics;
:mod:`cyclediff.bench.run`: ``cyclediff bench pie-bench``)."""

from . import pie_bench
from .pie_bench import decode_mask, load_pie, strip_brackets
from .score import Scorers, score

pie_bench.score = score  # cyclediff.bench.pie_bench.score, as the scorer is named where users look for it
pie_bench.Scorers = Scorers

__all__ = ["Scorers", "decode_mask", "load_pie", "pie_bench", "score", "strip_brackets"]

"""Running and recording experiments: data, models, variants, evaluation, timing,
results with provenance, FLOPs, sweeps, the faithful-vs-parallel study and the CLI.

Imports the core; never the book.
"""

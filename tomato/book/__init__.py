"""The companion book's layer: the paper's numbers, tables and claims, figures, pictures,
widgets, and the one-call notebook setup. Imports the harness and the core.
"""

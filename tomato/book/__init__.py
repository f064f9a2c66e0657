"""The companion book's layer: everything the notebooks show. Imports the harness and the
core, never the other way round.

Notebook setup
    :mod:`~tomato.book.notebook` (the one call every notebook starts with, and the page's
    own runs), :mod:`~tomato.book.parameters` (what each notebook parameter means and allows).
The paper and our runs
    :mod:`~tomato.book.paper` (the paper's numbers, claims and decoded profiles, and the
    measures that set our runs against them), :mod:`~tomato.book.runs` (reading recorded
    runs).
Text, tables and figures
    :mod:`~tomato.book.tables` (weights labels, provenance tables, warnings and the table style),
    :mod:`~tomato.book.figures` (the paper's Figure 2 on the model trained here),
    :mod:`~tomato.book.stats` (paired differences, their intervals and verdict words).
Pages of their own
    :mod:`~tomato.book.latency` (the latency pages), :mod:`~tomato.book.merge_cost` (the
    merge step's cost, launch-bound devices, static mode), :mod:`~tomato.book.trained`
    (the model trained here), :mod:`~tomato.book.miniature` (Table 1 in miniature),
    :mod:`~tomato.book.beyond` (past the paper).
Walk-through pictures
    :mod:`~tomato.book.pictures` (photos, token groups and sliders),
    :mod:`~tomato.book.walkthrough` (score histograms, token counts, hand-made grids and
    small studies of the pipeline).

Variant names and order come from :mod:`tomato.harness.variants`; every grouping goes
through :mod:`tomato.core.pipeline`.
"""

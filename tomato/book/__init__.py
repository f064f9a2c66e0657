"""The companion book's layer: everything the notebooks show. Imports the harness and the
core, never the other way round.

Notebook setup
    :mod:`~tomato.book.notebook` (the one call every notebook starts with),
    :mod:`~tomato.book.parameters` (what each notebook parameter means and allows).
The paper and our runs
    :mod:`~tomato.book.paper` (the paper's numbers and claims),
    :mod:`~tomato.book.runs` (reading recorded runs), :mod:`~tomato.book.measures`
    (agreement, token cuts, FLOPs, latency changes), :mod:`~tomato.book.claims`
    (Table 1 beside ours, one verdict per claim), :mod:`~tomato.book.verdict` (the
    build's verdict), :mod:`~tomato.book.tables`
    (provenance and result tables), :mod:`~tomato.book.display` (banners and notes),
    :mod:`~tomato.book.figures` (results plots), :mod:`~tomato.book.profiles` and
    :mod:`~tomato.book.latency` (the latency pages).
Walk-through pictures
    :mod:`~tomato.book.pictures` (photos and token groups), :mod:`~tomato.book.plots`
    (score histograms, token counts), :mod:`~tomato.book.grids` (hand-made grids),
    :mod:`~tomato.book.studies` (small studies of the pipeline), :mod:`~tomato.book.widgets`
    (live and pre-drawn sliders).

Variant names and order come from :mod:`tomato.harness.variants`; every grouping goes
through :mod:`tomato.core.pipeline`.
"""

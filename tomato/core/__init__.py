"""The method itself: ToMato's merge step and the ToMe baseline, for timm ViTs.

Depends on torch and timm only; nothing here imports the harness or the book.

similarity   the attention distribution ToMato thresholds
visit        grouping tokens on the grid: the paper's visit, faithful and parallel
propagation  the same labels by rounds of label propagation (the budget search's probes)
budget       choosing ``sim`` per image from a token budget
pipeline     block-0 tokens -> group labels, for a threshold or a budget (written once)
merge        group labels -> merged tokens with sizes
attention    timm attention with proportional attention
reference    the paper's merge for one image, as plainly as it reads (the tests' yardstick)
probe        block 0 up to its attention residual, for pictures and studies
tome         the ToMe baseline (Bolya et al., ICLR 2023)
patch        ``tomato.patch.timm(model)`` / ``tomato.patch.tome(model)``
"""

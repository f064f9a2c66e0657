"""ToMato: Token Merging at Once, for timm Vision Transformers.

Tiny public surface, in the spirit of ToMe::

    import timm, tomato
    model = timm.create_model("deit_base_patch16_224")
    tomato.patch.timm(model)
    model.sim = 1e-7          # merge neighbours whose attention distribution is >= sim

The package has three layers, imports pointing one way only (book -> harness -> core):

:mod:`tomato.core`
    The method: what a user imports to speed up a model (torch + timm only).
:mod:`tomato.harness`
    Data, models, variants, evaluation, timing, recorded results and the CLI.
:mod:`tomato.book`
    The companion book's paper numbers, tables, figures, pictures and notebook setup.
"""
from .core import budget, merge, patch, similarity, tome, visit

__all__ = ["budget", "merge", "patch", "similarity", "tome", "visit"]
__version__ = "0.1.0"

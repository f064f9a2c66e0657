"""ToMato: Token Merging at Once, for timm Vision Transformers.

Tiny public surface, in the spirit of ToMe::

    import timm, tomato
    model = timm.create_model("deit_base_patch16_224")
    tomato.patch.timm(model)
    model.sim = 1e-7          # merge neighbours whose attention distribution is >= sim
"""
from . import merge, patch, similarity, tome, visit

__all__ = ["merge", "patch", "similarity", "tome", "visit"]
__version__ = "0.1.0"

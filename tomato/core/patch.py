"""Patching timm Vision Transformers with ToMato (or ToMe) in place.

    import timm, tomato
    model = timm.create_model("deit_base_patch16_224")
    tomato.core.patch.timm(model)
    model.sim = 1e-7              # or: model.keep_ratio = 0.85 (sim chosen per image)
    model.method = "parallel"     # "faithful" (default) | "parallel"
    logits = model(images)
    tomato.core.patch.state(model).tokens   # patch tokens each image kept after block 0

    tomato.core.patch.tome(other)      # the ToMe baseline: other.r = 2
    tomato.core.patch.remove(model)    # back to the plain timm model

Like ToMe, patching swaps the classes of the model and its blocks for subclasses whose
``forward`` adds the merge; parameters and state dicts are untouched. Per-model state
(sizes flowing between blocks, the last forward's statistics) lives on the model itself.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, fields
from typing import Callable, ContextManager, Sequence

import torch
from torch import nn

from . import pipeline, attention, tome as tome_algo

_SETTINGS = tuple(f.name for f in fields(pipeline.Settings))


@dataclass
class State:
    """Everything a patched model keeps between and about forwards.

    Set by the user (through the model's attributes): ``settings`` (ToMato) or ``r`` (ToMe).
    Filled by each forward, for the last batch:
    ``tokens``: (B,) patch tokens kept after block 0 (ToMato) or after the last block (ToMe);
    ``sim``: (B,) threshold used per image (ToMato), ``log_sim`` its exact natural log;
    ``labels``: (B, N) group of each patch
    (ToMato's source map); ``source``: (B, T_out, T_in) ToMe's source map when traced;
    ``tokens_per_block``: token count leaving each block (padded count for ToMato batches).
    ``ranges``: optional ``name -> context manager`` wrapped around attention, merge and
    MLP (the harness sets an NVTX range here for Nsight Systems); ``None`` costs nothing.
    """

    kind: str
    num_prefix_tokens: int
    distill_token: bool
    model_class: type
    block_classes: list[type]
    settings: pipeline.Settings = field(default_factory=pipeline.Settings)
    r: list[int] = field(default_factory=list)
    trace_source: bool = False
    grid: tuple[int, int] = (0, 0)
    size: torch.Tensor | None = None
    tokens: torch.Tensor | None = None
    sim: torch.Tensor | None = None
    log_sim: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    source: torch.Tensor | None = None
    tokens_per_block: list[int] = field(default_factory=list)
    ranges: Callable[[str], ContextManager[None]] | None = None

    def reset(self, grid: tuple[int, int]) -> None:
        """Forget the last forward's tensors; called as each forward starts."""
        self.grid = grid
        self.size = self.tokens = self.sim = self.log_sim = self.labels = self.source = None
        self.tokens_per_block = []


def _check(model: nn.Module) -> None:
    """Raise ValueError unless ``model`` is a timm ViT we can patch."""
    from timm.models.vision_transformer import Block, VisionTransformer

    if not isinstance(model, VisionTransformer):
        raise ValueError(
            f"{type(model).__name__} is not a timm VisionTransformer; ToMato supports "
            "timm's deit_* and vit_* models (e.g. timm.create_model('deit_base_patch16_224'))"
        )
    if getattr(model, "cls_token", None) is None:
        raise ValueError(
            "the model has no class token: ToMato keeps the class token out of the merge "
            "and classifies from it; choose a ViT with class_token=True"
        )
    if getattr(model, "attn_pool", None) is not None:
        raise ValueError("attention-pooling heads (global_pool='map') are not supported")
    for i, blk in enumerate(model.blocks):
        if not isinstance(blk, Block) or not attention.is_supported(blk.attn):
            raise ValueError(
                f"block {i} is a {type(blk).__name__} with {type(blk.attn).__name__}; only "
                "timm's pre-norm Block with its standard Attention is supported"
            )


def _grid(model: nn.Module, images: torch.Tensor) -> tuple[int, int]:
    pe = model.patch_embed
    if getattr(model, "dynamic_img_size", False):
        return tuple(pe.dynamic_feat_size(images.shape[-2:]))  # type: ignore[return-value]
    return tuple(pe.grid_size)  # type: ignore[return-value]


def _model_class(base: type) -> type:
    class Patched(base):  # type: ignore[misc, valid-type]
        """A timm VisionTransformer whose forward resets the merge state first."""

        def forward_features(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
            self._tomato.reset(_grid(self, x))
            return super().forward_features(x, *args, **kwargs)

        def pool(self, x: torch.Tensor, pool_type: str | None = None) -> torch.Tensor:
            size = self._tomato.size
            kind = self.global_pool if pool_type is None else pool_type
            if size is None or kind != "avg":
                return super().pool(x, pool_type)
            # Average pooling must weigh each merged token by the patches it stands for
            # (and ignore size-0 padding), or merging would shift the pooled feature.
            p = 0 if self.pool_include_prefix else self.num_prefix_tokens
            w = size[:, p:]
            return (x[:, p:] * w).sum(dim=1) / w.sum(dim=1)

    for name in _SETTINGS:
        setattr(Patched, name, _setting(name))
    Patched.r = property(  # type: ignore[attr-defined]
        lambda self: self._tomato.r, lambda self, v: _set_r(self, v)
    )
    Patched.__name__ = Patched.__qualname__ = "ToMato" + base.__name__
    return Patched


def _setting(name: str) -> property:
    """A model attribute (``model.sim`` ...) that validates as soon as it is set."""

    def get(self: nn.Module):
        return getattr(self._tomato.settings, name)

    def set_(self: nn.Module, value) -> None:
        trial = pipeline.Settings(**{**self._tomato.settings.__dict__, name: value})
        if name in ("keep_ratio", "tokens") and value is not None:
            # Setting a budget replaces the other budget and any fixed threshold.
            other = "tokens" if name == "keep_ratio" else "keep_ratio"
            setattr(trial, other, None)
            trial.sim = None
        elif name == "sim" and value is not None:
            trial.keep_ratio = trial.tokens = None
        trial.validate()
        self._tomato.settings = trial

    return property(get, set_, doc=f"ToMato setting {name!r} (see tomato.core.pipeline.Settings)")


def _set_r(model: nn.Module, r: int | Sequence[int]) -> None:
    if model._tomato.kind != "tome":
        raise ValueError("r is ToMe's parameter; this model is patched with ToMato (set sim)")
    model._tomato.r = tome_algo.schedule(r, len(model.blocks))


def _range(block: nn.Module, name: str) -> ContextManager[None]:
    """The model's optional profiling range around a stage (see ``State.ranges``)."""
    ranges = block._tomato.ranges
    return contextlib.nullcontext() if ranges is None else ranges(name)


def _attend(block: nn.Module, x: torch.Tensor, size: torch.Tensor | None, need_probs: bool = False):
    with _range(block, "attention"):
        a = attention.forward(block.attn, block.norm1(x), size, need_probs)
        return x + block.drop_path1(block.ls1(a.x)), a


def _mlp(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with _range(block, "mlp"):
        return x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))


def _no_mask(attn_mask: torch.Tensor | None, is_causal: bool) -> None:
    if attn_mask is not None or is_causal:
        raise ValueError("patched blocks do not take attention masks: merging changes the tokens")


def _tomato_block(base: type) -> type:
    class ToMatoBlock(base):  # type: ignore[misc, valid-type]
        """Block 0 merges once after attention; later blocks use proportional attention."""

        def forward(self, x, attn_mask=None, is_causal=False):
            _no_mask(attn_mask, is_causal)
            st: State = self._tomato
            merge_here = self._tomato_index == 0 and st.settings.active
            need_probs = merge_here and st.settings.metric == "attention"
            x, a = _attend(self, x, st.size, need_probs)
            if merge_here:
                with _range(self, "tomato.merge"):
                    step = pipeline.merge_at_once(x, st.settings, st.grid, st.num_prefix_tokens, a.probs)
                m = step.merged
                x, st.size = m.x, m.size
                st.tokens, st.sim, st.log_sim, st.labels = m.counts, step.sim, step.log_sim, m.labels
            st.tokens_per_block.append(x.shape[1])
            return _mlp(self, x)

    return ToMatoBlock


def _tome_block(base: type) -> type:
    class ToMeBlock(base):  # type: ignore[misc, valid-type]
        """Merges ``r`` tokens by bipartite soft matching after attention, every block."""

        def forward(self, x, attn_mask=None, is_causal=False):
            _no_mask(attn_mask, is_causal)
            st: State = self._tomato
            x, a = _attend(self, x, st.size)
            r = st.r[self._tomato_index] if st.r else 0
            if r > 0:
                m = tome_algo.bipartite_soft_matching(a.keys, r, True, st.distill_token)
                if st.trace_source:
                    st.source = tome_algo.merge_source(m, x, st.source)
                x, st.size = tome_algo.merge_wavg(m, x, st.size)
            st.tokens_per_block.append(x.shape[1])
            st.tokens = torch.full((x.shape[0],), x.shape[1] - st.num_prefix_tokens, device=x.device)
            return _mlp(self, x)

    return ToMeBlock


def _apply(model: nn.Module, kind: str, trace_source: bool) -> nn.Module:
    if hasattr(model, "_tomato"):
        remove(model)
    _check(model)
    distill = getattr(model, "dist_token", None) is not None
    if kind == "tome" and model.num_prefix_tokens != 1 + int(distill):
        raise ValueError("ToMe here supports class (+ distillation) tokens, not register tokens")
    state = State(
        kind=kind,
        num_prefix_tokens=model.num_prefix_tokens,
        distill_token=distill,
        model_class=model.__class__,
        block_classes=[blk.__class__ for blk in model.blocks],
        trace_source=trace_source,
    )
    make_block = _tomato_block if kind == "tomato" else _tome_block
    model.__class__ = _model_class(model.__class__)
    model._tomato = state
    for i, blk in enumerate(model.blocks):
        blk.__class__ = make_block(blk.__class__)
        blk._tomato = state
        blk._tomato_index = i
    return model


def timm(model: nn.Module) -> nn.Module:
    """Patch a timm ViT with ToMato in place (returns it). Merging starts once
    ``model.sim``, ``model.keep_ratio`` or ``model.tokens`` is set."""
    return _apply(model, "tomato", trace_source=False)


def tome(model: nn.Module, trace_source: bool = False) -> nn.Module:
    """Patch a timm ViT with the ToMe baseline in place; set ``model.r`` (default 0)."""
    return _apply(model, "tome", trace_source)


def remove(model: nn.Module) -> nn.Module:
    """Undo :func:`timm` / :func:`tome`: the model is a plain timm model again."""
    st: State | None = getattr(model, "_tomato", None)
    if st is None:
        raise ValueError("model is not patched")
    for blk, cls in zip(model.blocks, st.block_classes):
        blk.__class__ = cls
        del blk._tomato, blk._tomato_index
    model.__class__ = st.model_class
    del model._tomato
    return model


def state(model: nn.Module) -> State:
    """The patched model's :class:`State` (settings and the last forward's statistics)."""
    st = getattr(model, "_tomato", None)
    if st is None:
        raise ValueError("model is not patched: call tomato.core.patch.timm(model) first")
    return st

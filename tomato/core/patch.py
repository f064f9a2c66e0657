"""Patching timm Vision Transformers with ToMato (or ToMe) in place::

    import timm, tomato
    model = timm.create_model("deit_base_patch16_224")
    tomato.patch.timm(model)
    model.sim = 1e-7              # or: model.keep_ratio = 0.85 (sim chosen per image)
    model.method = "parallel"     # "faithful" (default) | "parallel"
    logits = model(images)
    tomato.patch.state(model).tokens   # patch tokens each image kept after block 0

    model.tokens, model.static = 138, True   # exactly 138 tokens per image: no host sync,
                                             # for torch.compile, CUDA graphs and ONNX
    model.block = 3               # beyond the paper: merge after block 3's attention
    model.metric = "keys"         # ... on ToMe's key cosine instead of the distribution
    model.r = 4                   # ... then ToMe (r per block) in the blocks after it

    tomato.patch.tome(other)      # the ToMe baseline: other.r = 2, a per-block list,
                                  # or an (r, inflection) schedule; other.prop_attn
    tomato.patch.remove(model)    # back to the plain timm model

Like ToMe, patching swaps the classes of the model and its blocks for subclasses whose
``forward`` adds the merge; parameters and state dicts are untouched. Per-model state
(sizes flowing between blocks, the last forward's statistics) lives on the model itself.
"""
from __future__ import annotations

import contextlib
import copy
import functools
from dataclasses import dataclass, field, fields
from typing import Any, Callable, ContextManager, TypeVar, overload

import torch
from torch import nn

from . import attention, pipeline, tome as tome_algo
from .grid import GridIndex, grid_index

__all__ = ["State", "timm", "tome", "remove", "state"]

#: A timm model or block: mypy types an ``nn.Module``'s submodules and attributes as
#: ``Tensor | Module``, so the patch's helpers take timm's modules untyped.
Timm = Any

_SETTINGS = tuple(f.name for f in fields(pipeline.Settings))


@dataclass
class State:
    """Everything a patched model keeps between and about forwards.

    Set by the user (through the model's attributes): ``settings`` (ToMato) and ``r``
    (ToMe, one count per block; on a ToMato model, ToMe in the blocks after ToMato's
    merge), and ``prop_attn`` (proportional attention, on by default).
    Filled by each forward, for the last batch:
    ``tokens``: (B,) patch tokens kept after ToMato's merge or after ToMe's first block;
    ``merged_block``: the block after whose attention ToMato merged (None: no merge);
    ``sim``: (B,) threshold used per image (ToMato), ``log_sim`` its exact natural log;
    ``exact``: (B,) bool, static mode only: whether the budget
    search was confirmed exact (False only on pathological grids, where the image kept
    fewer tokens than the non-static mode would);
    ``labels``: (B, N) group of each patch
    (ToMato's source map); ``source``: (B, T_out, T_in) ToMe's source map when traced;
    ``tokens_per_block``: token count leaving each block (padded count for ToMato batches).
    ``index``: the patch grid's index tables, built when the model is patched (again when
    a forward comes on another grid or device, see :func:`_grid_tables`) and kept.
    ``bias``: (B, 1, 1, T) attention bias from ``size`` (see :func:`_attention_bias`),
    and ``bias_of`` the ``size`` tensor it was computed from: recomputed only when
    ``size`` is replaced (after a merge), so later blocks reuse it.
    ``ranges``: optional ``name -> context manager`` wrapped around each stage of every
    block: ``"attention"``, ``"tomato.merge"`` (ToMato, block 0) or ``"tome.merge"`` (ToMe),
    and ``"mlp"`` (the harness sets an NVTX range here for Nsight Systems; it may map these
    names to any labels it likes); ``None`` costs nothing.
    """

    kind: str
    num_prefix_tokens: int
    distill_token: bool
    model_class: type
    block_classes: list[type]
    settings: pipeline.Settings = field(default_factory=pipeline.Settings)
    r: list[int] = field(default_factory=list)
    prop_attn: bool = True
    trace_source: bool = False
    grid: tuple[int, int] = (0, 0)
    index: GridIndex | None = None
    size: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    bias_of: torch.Tensor | None = None
    tokens: torch.Tensor | None = None
    sim: torch.Tensor | None = None
    log_sim: torch.Tensor | None = None
    exact: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    source: torch.Tensor | None = None
    tokens_per_block: list[int] = field(default_factory=list)
    merged_block: int | None = None
    ranges: Callable[[str], ContextManager[None]] | None = None

    def reset(self, grid: tuple[int, int]) -> None:
        """Forget the last forward's tensors; called as each forward starts."""
        self.grid = grid
        self.size = self.bias = self.bias_of = self.tokens = self.sim = self.log_sim = None
        self.exact = self.labels = self.source = None
        self.tokens_per_block = []
        self.merged_block = None


def _check(model: Timm) -> None:
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


def _grid(model: Timm, images: torch.Tensor) -> tuple[int, int]:
    pe = model.patch_embed
    if getattr(model, "dynamic_img_size", False):
        return tuple(pe.dynamic_feat_size(images.shape[-2:]))
    return tuple(pe.grid_size)


_UNSUPPORTED = ("{what} is not supported on a ToMato-patched model (its blocks after the merge see fewer "
                "tokens): call tomato.patch.remove(model) first, and patch again afterwards")


@functools.lru_cache(maxsize=None)
def _model_class(base: type) -> type:
    class Patched(base):  # type: ignore[misc]
        """A timm VisionTransformer whose forward resets the merge state first."""

        def forward_features(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            st: State = self._tomato
            st.reset(_grid(self, x))
            x = super().forward_features(x, *args, **kwargs)
            if st.kind == "tomato" and st.tokens is not None:
                st.merged_block = st.settings.block
            if st.kind == "tomato" and not st.r:
                # Blocks before the merge leave every token; the others what it left.
                b = st.settings.block if st.tokens is not None else len(self.blocks)
                full = st.num_prefix_tokens + st.grid[0] * st.grid[1]
                st.tokens_per_block = [full] * b + [x.shape[1]] * (len(self.blocks) - b)
            return x

        def pool(self, x: torch.Tensor, pool_type: str | None = None) -> torch.Tensor:
            size = self._tomato.size
            kind = self.global_pool if pool_type is None else pool_type
            if size is None or kind != "avg":
                pooled: torch.Tensor = super().pool(x, pool_type)
                return pooled
            # Average pooling must weigh each merged token by the patches it stands for
            # (and ignore size-0 padding), or merging would shift the pooled feature.
            p = 0 if self.pool_include_prefix else self.num_prefix_tokens
            w = size[:, p:]
            mean: torch.Tensor = (x[:, p:] * w).sum(dim=1) / w.sum(dim=1)
            return mean

        # timm calls that assume every block sees every token: refused in one line each,
        # instead of a shape error deep inside (the merge changes the sequence after block 0).
        def forward_intermediates(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError(_UNSUPPORTED.format(what="forward_intermediates"))

        def get_intermediate_layers(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError(_UNSUPPORTED.format(what="get_intermediate_layers"))

        def set_grad_checkpointing(self, enable: bool = True) -> None:
            if enable:
                raise NotImplementedError(_UNSUPPORTED.format(what="set_grad_checkpointing(True)"))
            super().set_grad_checkpointing(False)

        def __reduce_ex__(self, protocol: Any) -> Any:
            # The patched class is made at run time, so pickle cannot name it.
            raise TypeError("a ToMato-patched model cannot be pickled (torch.save(model)): save its weights, "
                            "torch.save(model.state_dict()), which are timm's own, or call "
                            "tomato.patch.remove(model) first")

        def __deepcopy__(self, memo: dict[int, Any]) -> Any:
            new = type(self).__new__(type(self))
            memo[id(self)] = new
            for key, value in self.__dict__.items():
                new.__dict__[key] = copy.deepcopy(value, memo)
            return new

    for name in _SETTINGS:
        setattr(Patched, name, _setting(name))
    Patched.r = property(
        lambda self: self._tomato.r, _set_r, doc="ToMe: tokens merged in each block (a list)"
    )
    Patched.prop_attn = property(
        lambda self: self._tomato.prop_attn, _set_prop_attn,
        doc="Proportional attention: log(size) added to the attention logits (default True)",
    )
    Patched.__name__ = Patched.__qualname__ = "ToMato" + base.__name__
    return Patched


def _setting(name: str) -> property:
    """A model attribute (``model.sim`` ...) that validates as soon as it is set."""

    def get(self: Timm) -> Any:
        return getattr(self._tomato.settings, name)

    def set_(self: Timm, value: Any) -> None:
        if self._tomato.kind != "tomato":
            raise ValueError(
                f"model.{name} is a ToMato setting, but this model is patched with ToMe: set "
                "model.r, or patch it with tomato.core.patch.timm(model)"
            )
        try:
            value = pipeline.check_setting(name, value)
        except ValueError:
            raise _refused(name, value, pipeline.ALLOWED[name]) from None
        if name == "block" and value >= len(self.blocks):
            raise _refused(name, value, f"an int from 0 to {len(self.blocks) - 1} "
                                        f"(this model has {len(self.blocks)} blocks)")
        trial = pipeline.Settings(**{**self._tomato.settings.__dict__, name: value})
        if name in ("keep_ratio", "tokens") and value is not None:
            # Setting a budget replaces the other budget and any fixed threshold.
            other = "tokens" if name == "keep_ratio" else "keep_ratio"
            setattr(trial, other, None)
            trial.sim = None
        elif name == "sim" and value is not None:
            trial.keep_ratio = trial.tokens = None
        try:
            trial.validate()
        except ValueError as err:
            if str(err) == pipeline.STATIC_NEEDS_BUDGET:
                then = ("set model.tokens or model.keep_ratio first" if name == "static"
                        else "set model.static = False first")
                raise ValueError(f"model.{name} = {value!r} is not allowed here: {err}; {then}") from None
            raise _refused(name, value, pipeline.ALLOWED[name]) from None
        self._tomato.settings = trial
        _place_merge(self)

    return property(get, set_, doc=f"ToMato setting {name!r} (see tomato.core.pipeline.Settings)")


def _refused(name: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"model.{name} = {value!r} is not allowed: {name} must be {allowed}")


def _place_merge(model: Timm) -> None:
    """Mark the block that merges (``settings.block``) and the blocks after it, where a
    ToMato model's ``r`` runs ToMe. Bools, not indices, for torch.compile (see below)."""
    b = model._tomato.settings.block
    for i, blk in enumerate(model.blocks):
        blk._tomato_first, blk._tomato_after = i == b, i > b


def _set_r(model: Timm, r: tome_algo.RSpec) -> None:
    """ToMe's r per block; on a ToMato model, ToMe in the blocks after ToMato's merge."""
    try:
        model._tomato.r = tome_algo.per_block_r(r, len(model.blocks))
    except ValueError as err:
        raise ValueError(f"model.{err}") from None


def _set_prop_attn(model: Timm, on: Any) -> None:
    if not isinstance(on, bool):
        raise _refused("prop_attn", on, "True or False")
    model._tomato.prop_attn = on
    model._tomato.bias = model._tomato.bias_of = None  # the bias depends on prop_attn


def _attention_bias(st: State) -> torch.Tensor | None:
    """The attention bias for ``st.size``: ``log(size)`` with proportional attention;
    without it only ToMato's size-0 padding stays masked (``log 0 = -inf``).
    Computed once each time ``st.size`` is replaced (after a merge), not once per block."""
    if st.bias_of is not st.size:
        st.bias, st.bias_of = _bias_for(st), st.size
    return st.bias


def _bias_for(st: State) -> torch.Tensor | None:
    if st.size is None:
        return None
    if st.prop_attn:
        return attention.size_bias(st.size)
    if st.kind == "tome":  # ToMe never pads
        return None
    return attention.size_bias((st.size > 0).to(st.size.dtype))


def _grid_tables(st: State, device: torch.device) -> GridIndex:
    """The tables of ``st.grid`` on ``device``: the kept ones when they serve (same grid and
    device, and plain tensors: tables built while torch.export or torch.compile traced are
    fake ones, no use after), else new ones, kept."""
    index = st.index
    if (index is None or (index.h, index.w) != tuple(st.grid) or type(index.me) is not torch.Tensor
            or index.me.device != device):
        index = st.index = grid_index(st.grid, st.grid[0] * st.grid[1], device)
    return index


def _timm_will_do(st: State, x: torch.Tensor) -> bool:
    """Whether a block that neither merges nor runs ToMe may run timm's own forward: no
    profiling ranges to wrap its stages, and no autocast (under which the float32 bias
    would not match the half-precision queries that timm hands to its attention)."""
    return st.ranges is None and not torch.is_autocast_enabled(x.device.type)


def _range(block: Timm, name: str) -> ContextManager[None]:
    """The model's optional profiling range around a stage (see ``State.ranges``)."""
    ranges = block._tomato.ranges
    return contextlib.nullcontext() if ranges is None else ranges(name)


def _attend(block: Timm, x: torch.Tensor, need_probs: bool = False, need_keys: bool = False
            ) -> tuple[torch.Tensor, attention.AttentionOut]:
    bias = _attention_bias(block._tomato)
    with _range(block, "attention"):
        a = attention.forward(block.attn, block.norm1(x), need_probs=need_probs, bias=bias, need_keys=need_keys)
        return x + block.drop_path1(block.ls1(a.x)), a


def _mlp(block: Timm, x: torch.Tensor) -> torch.Tensor:
    with _range(block, "mlp"):
        out: torch.Tensor = x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))
        return out


def _no_mask(attn_mask: torch.Tensor | None, is_causal: bool) -> None:
    if attn_mask is not None or is_causal:
        raise ValueError("patched blocks do not take attention masks: merging changes the tokens")


# One patched class per timm class (cached), shared by all blocks of all models: a
# ToMato block finds its role from the bools ``self._tomato_first`` (it merges) and
# ``self._tomato_after`` (it may run ToMe), a ToMe block reads its ``r`` by
# ``self._tomato_index``, so torch.compile does not recompile for twelve classes.
@functools.lru_cache(maxsize=None)
def _tomato_block(base: type) -> type:
    class ToMatoBlock(base):  # type: ignore[misc]
        """The merge block (0 by default) merges once after attention; later blocks use
        proportional attention, and run ToMe where the model's ``r`` asks for it."""

        def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                    is_causal: bool = False) -> torch.Tensor:
            _no_mask(attn_mask, is_causal)
            st: State = self._tomato
            # A bool, not the index: torch.compile treats int attributes of a module as
            # constants, so ``index == 0`` would compile each block apart.
            # An empty batch has nothing to merge (and no maximum group count to read).
            merge_here = self._tomato_first and st.settings.active and x.shape[0] > 0
            r = st.r[self._tomato_index] if st.r and self._tomato_after else 0
            if not merge_here and r == 0 and _timm_will_do(st, x):
                # Nothing of ToMato's in this block but the sizes' bias: timm's own block
                # runs, with the bias as its attention mask (exactly what _attend computes).
                x = super().forward(x, attn_mask=_attention_bias(st))
                if st.r:
                    st.tokens_per_block.append(x.shape[1])
                return x
            metric = st.settings.metric
            x, a = _attend(self, x, need_probs=merge_here and metric == "attention",
                           need_keys=(merge_here and metric == "keys") or r > 0)
            if merge_here:
                index = _grid_tables(st, x.device)
                with _range(self, "tomato.merge"):
                    step = pipeline.merge_at_once(x, st.settings, st.grid, st.num_prefix_tokens, a.probs, a.keys,
                                                  index)
                m = step.merged
                x, st.size = m.x, m.size
                _attention_bias(st)  # now, so later blocks all see a ready bias (one compile)
                st.tokens, st.sim, st.log_sim, st.labels = m.counts, step.sim, step.log_sim, m.labels
                st.exact = step.exact
            elif r > 0:  # ToMe after ToMato; its padding (size 0) never merges into a token
                assert a.keys is not None
                with _range(self, "tome.merge"):
                    x, st.size = tome_algo.merge(tome_algo.match(a.keys, r, st.num_prefix_tokens, st.size), x, st.size)
            if st.r:  # only then, so that plain ToMato keeps a list torch.compile need not guard
                st.tokens_per_block.append(x.shape[1])
            # Otherwise tokens_per_block is filled by the model after the blocks: appending
            # here would make torch.compile guard on the list's length, block by block.
            return _mlp(self, x)

    return ToMatoBlock


@functools.lru_cache(maxsize=None)
def _tome_block(base: type) -> type:
    class ToMeBlock(base):  # type: ignore[misc]
        """Merges ``r`` tokens by bipartite soft matching after attention, every block."""

        def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                    is_causal: bool = False) -> torch.Tensor:
            _no_mask(attn_mask, is_causal)
            st: State = self._tomato
            r = st.r[self._tomato_index] if st.r else 0
            x, a = _attend(self, x, need_keys=r > 0)
            if r > 0:
                assert a.keys is not None
                with _range(self, "tome.merge"):
                    m = tome_algo.match(a.keys, r, st.num_prefix_tokens)
                    if st.trace_source:
                        st.source = tome_algo.track_source(m, st.source, x.dtype)
                    x, st.size = tome_algo.merge(m, x, st.size)
            st.tokens_per_block.append(x.shape[1])
            st.tokens = torch.full((x.shape[0],), x.shape[1] - st.num_prefix_tokens, device=x.device)
            return _mlp(self, x)

    return ToMeBlock


def _apply(model: Timm, kind: str, trace_source: bool, prop_attn: bool = True) -> Timm:
    st: State | None = getattr(model, "_tomato", None)
    if st is not None:
        names = {"tomato": "ToMato", "tome": "ToMe"}
        if st.kind != kind:
            raise ValueError(f"the model is already patched with {names[st.kind]}; call "
                             f"tomato.patch.remove(model) first to patch it with {names[kind]}")
        # Patching again is a no-op that keeps the settings (sim, r, ...) already made.
        if kind == "tome":
            _set_prop_attn(model, prop_attn)
            st.trace_source = trace_source
        return model
    _check(model)
    distill = getattr(model, "dist_token", None) is not None
    if not isinstance(prop_attn, bool):
        raise _refused("prop_attn", prop_attn, "True or False")
    if kind == "tome" and model.num_prefix_tokens != 1 + int(distill):
        raise ValueError("ToMe here supports class (+ distillation) tokens, not register tokens")
    state = State(
        kind=kind,
        num_prefix_tokens=model.num_prefix_tokens,
        distill_token=distill,
        model_class=model.__class__,
        block_classes=[blk.__class__ for blk in model.blocks],
        prop_attn=prop_attn,
        trace_source=trace_source,
    )
    if kind == "tomato":  # the grid's tables for the model's own grid, ready before its first forward
        state.grid = tuple(model.patch_embed.grid_size)
        _grid_tables(state, next(model.parameters()).device)
    make_block = _tomato_block if kind == "tomato" else _tome_block
    model.__class__ = _model_class(model.__class__)
    model._tomato = state
    for i, blk in enumerate(model.blocks):
        blk.__class__ = make_block(blk.__class__)
        blk._tomato = state
        blk._tomato_index = i
    _place_merge(model)
    return model


def timm(model: nn.Module) -> nn.Module:
    """Patch a timm ViT with ToMato in place (returns it). Merging starts once
    ``model.sim``, ``model.keep_ratio`` or ``model.tokens`` is set."""
    patched: nn.Module = _apply(model, "tomato", trace_source=False)
    return patched


def tome(model: nn.Module, trace_source: bool = False, prop_attn: bool = True) -> nn.Module:
    """Patch a timm ViT with the ToMe baseline in place; set ``model.r`` (default 0).

    ``model.r`` takes an int, a per-block list or an ``(r, inflection)`` schedule (see
    :func:`tomato.core.tome.per_block_r`); ``trace_source`` records in
    ``state(model).source`` which patches each token holds; ``prop_attn`` switches
    proportional attention (also ``model.prop_attn``)."""
    patched: nn.Module = _apply(model, "tome", trace_source, prop_attn)
    return patched


def remove(model: nn.Module) -> nn.Module:
    """Undo :func:`timm` / :func:`tome`: the model is a plain timm model again."""
    st: State | None = getattr(model, "_tomato", None)
    if st is None:
        raise ValueError("model is not patched")
    blocks: Timm = model.blocks
    for blk, cls in zip(blocks, st.block_classes):
        blk.__class__ = cls
        del blk._tomato, blk._tomato_index, blk._tomato_first, blk._tomato_after
    model.__class__ = st.model_class
    del model._tomato
    return model


_UNSET: Any = object()
_T = TypeVar("_T")


@overload
def state(model: nn.Module) -> State: ...
@overload
def state(model: nn.Module, default: _T) -> State | _T: ...
def state(model: nn.Module, default: Any = _UNSET) -> Any:
    """The patched model's :class:`State` (settings and the last forward's statistics).

    On a model that is not patched: ``default`` when given (``state(model, None)`` asks
    "is it patched?"), else ValueError."""
    st: State | None = getattr(model, "_tomato", None)
    if st is None:
        if default is not _UNSET:
            return default
        raise ValueError("model is not patched: call tomato.core.patch.timm(model) first")
    return st

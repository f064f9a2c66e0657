"""Model variants named by one spec string.

    deit                               the unpatched model (also: none, base, baseline)
    tome:r=2                           ToMe, r tokens merged in every block
    tomato:sim=1e-7                    ToMato with a fixed threshold
    tomato:keep=0.85                   ToMato keeping at most 85% of the patch tokens
    tomato:tokens=150                  ToMato keeping at most 150 patch tokens
    tomato:sim=1e-7,method=parallel    any ToMato setting: method, metric, rule, block
    tomato:keep=0.7,block=3            beyond the paper: merge after block 3's attention
    tomato:keep=0.7,metric=keys        ... on ToMe's key cosine (or metric=cosine)
    hybrid:sim=1e-15,r=4               ToMato at block 0, then ToMe r=4 in blocks 1-11

:func:`parse` turns a spec into a :class:`Variant`; ``Variant.apply(model)`` patches a timm
model in place (undoing any earlier patch), and ``Variant.spec`` is the canonical string
used to name results.

This module is the one place that names and orders variants: ``Variant.label`` (tables
and legends), ``Variant.short`` (point annotations), ``Variant.family`` (plot series),
``Variant.parameter`` (the swept knob) and :func:`order` (baseline, ToMe by r, ToMato by
sim, merging more to the right). :data:`PAPER_SIMS` holds the thresholds of the paper's
Figure 3, the one copy the sweep and the book share.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable

from torch import nn

from ..core import pipeline, patch

_BASELINE = {"deit", "none", "base", "baseline", "vit"}

#: Thresholds the authors profiled for the paper's Figure 3 (values read from its graph).
PAPER_SIMS: tuple[float, ...] = (1e-2, 1e-3, 5e-4, 1e-7, 1e-20)

_KINDS = ("deit", "tome", "tomato", "hybrid")
_SWEPT = ("r", "sim", "keep_ratio", "tokens")


def format_number(value: Any) -> str:
    """Numbers as people write them: ``1e-07`` -> ``1e-7``, ``0.85`` -> ``0.85``."""
    if isinstance(value, float):
        return re.sub(r"e([+-])0*(\d)", lambda m: "e" + ("-" if m.group(1) == "-" else "") + m.group(2),
                      f"{value:g}")
    return str(value)
_TOMATO_KEYS = {"sim": float, "keep": float, "keep_ratio": float, "tokens": int,
                "method": str, "metric": str, "rule": str, "block": int}
_TOMATO_ORDER = ("method", "metric", "rule", "block")  # set before the threshold


@dataclass(frozen=True)
class Variant:
    """kind: "deit" | "tome" | "tomato" | "hybrid"; params: sorted (name, value) pairs."""

    kind: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def spec(self) -> str:
        """Canonical spec string, e.g. ``tomato:method=parallel,sim=1e-07``."""
        if not self.params:
            return self.kind
        return self.kind + ":" + ",".join(f"{k}={v}" for k, v in self.params)

    @property
    def label(self) -> str:
        """Short name for tables and legends: ``baseline``, ``ToMe r=2``,
        ``ToMato sim=1e-7``, ``ToMato keep=0.85``, ``ToMato parallel sim=1e-7``."""
        if self.kind == "deit":
            return "baseline"
        if self.kind == "tome":
            return f"ToMe r={self.get('r')}"
        if self.kind == "hybrid":
            tomato = Variant("tomato", tuple(p for p in self.params if p[0] != "r"))
            return f"{tomato.label} + ToMe r={self.get('r')}"
        parts = ["ToMato"]
        if self.get("method") not in (None, "faithful"):
            parts.append(str(self.get("method")))
        for key, name in (("sim", "sim"), ("keep_ratio", "keep"), ("tokens", "tokens")):
            if self.get(key) is not None:
                parts.append(f"{name}={format_number(self.get(key))}")
        parts += [f"{key}={self.get(key)}" for key in ("metric", "rule", "block") if self.get(key) is not None]
        return " ".join(parts)

    @property
    def parameter(self) -> tuple[str, Any]:
        """The swept knob and its value, e.g. ``("sim", 1e-07)``; ``("", "")`` for the baseline."""
        for name in _SWEPT:
            if self.get(name) is not None:
                return name, self.get(name)
        return "", ""

    @property
    def short(self) -> str:
        """The swept value alone, for annotating points: ``1e-7``, ``r=2``, ``keep=0.7``."""
        name, value = self.parameter
        if not name:
            return "baseline"
        if name == "sim":  # always as a power of ten: 1e-7, 5e-4, 2.5e-3
            mantissa, exponent = f"{float(value):.3e}".split("e")
            return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
        return f"{'keep' if name == 'keep_ratio' else name}={format_number(value)}"

    @property
    def family(self) -> str:
        """The plot series: ``deit``, ``tome``, ``tomato`` (fixed sim), ``parallel``,
        ``keep`` or ``tokens`` (ToMato choosing sim per image), ``hybrid``."""
        if self.kind != "tomato":
            return self.kind
        if self.get("method") == "parallel":
            return "parallel"
        if self.get("keep_ratio") is not None:
            return "keep"
        if self.get("tokens") is not None:
            return "tokens"
        return "tomato"

    @property
    def sort_key(self) -> tuple:
        """Baseline, then ToMe by r, then ToMato by sim (merging more to the right), keep
        ratio and token budget (both descending); the parallel method after the faithful."""
        name, value = self.parameter
        if name == "sim":
            val = -math.log10(value) if value > 0 else math.inf
        elif name == "r":
            val = float(value)
        else:
            val = -float(value or 0)
        return (_KINDS.index(self.kind), _SWEPT.index(name) if name else -1, str(self.get("method") or ""), val)

    def get(self, name: str, default: Any = None) -> Any:
        return dict(self.params).get(name, default)

    def apply(self, model: nn.Module) -> nn.Module:
        """Patch ``model`` in place for this variant and return it."""
        if patch.state(model, None) is not None:
            patch.remove(model)
        if self.kind == "tome":
            patch.tome(model)
            model.r = self.get("r", 0)
        elif self.kind in ("tomato", "hybrid"):
            patch.timm(model)
            for name, value in self.params:  # method/metric/rule/block first, then the threshold
                if name in _TOMATO_ORDER:
                    setattr(model, name, value)
            for name, value in self.params:
                if name in ("sim", "keep_ratio", "tokens", "r"):
                    setattr(model, name, value)
        return model


def _parse_r(spec: str, text: str) -> int:
    """ToMe's r from a spec's text (ToMe and the hybrid): an int >= 0."""
    try:
        r = int(text)
    except ValueError:
        raise ValueError(f"variant {spec!r}: r must be an integer") from None
    if r < 0:
        raise ValueError(f"variant {spec!r}: r must be >= 0")
    return r


def parse(spec: str | Variant) -> Variant:
    """Parse a spec string (see the module docstring); ValueError on anything unknown."""
    if isinstance(spec, Variant):
        return spec
    text = spec.strip()
    kind, _, rest = text.partition(":")
    kind = kind.strip().lower()
    pairs: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not value.strip():
            raise ValueError(f"variant {spec!r}: expected name=value, got {item!r}")
        pairs[key.strip().lower()] = value.strip()

    if kind in _BASELINE:
        if pairs:
            raise ValueError(f"variant {spec!r}: the baseline takes no parameters")
        return Variant("deit")
    if kind == "tome":
        if set(pairs) != {"r"}:
            raise ValueError(f"variant {spec!r}: ToMe takes exactly one parameter, r (e.g. tome:r=2)")
        return Variant("tome", (("r", _parse_r(spec, pairs["r"])),))
    if kind in ("tomato", "hybrid"):
        params: dict[str, Any] = {}
        if kind == "hybrid":
            if "r" not in pairs:
                raise ValueError(f"variant {spec!r}: the hybrid needs ToMe's r (e.g. hybrid:sim=1e-15,r=4)")
            params["r"] = _parse_r(spec, pairs.pop("r"))
        for key, value in pairs.items():
            if key not in _TOMATO_KEYS:
                raise ValueError(
                    f"variant {spec!r}: unknown ToMato parameter {key!r}; "
                    f"known: {', '.join(sorted(_TOMATO_KEYS))}"
                )
            try:
                params["keep_ratio" if key == "keep" else key] = _TOMATO_KEYS[key](value)
            except ValueError:
                raise ValueError(f"variant {spec!r}: bad value for {key}: {value!r}") from None
        if params.get("block") == 0:  # the default: one spec (and one run folder) per model
            del params["block"]
        budgets = [k for k in ("sim", "keep_ratio", "tokens") if k in params]
        if len(budgets) != 1:
            raise ValueError(f"variant {spec!r}: give exactly one of sim, keep or tokens")
        pipeline.Settings(**{k: v for k, v in params.items() if k != "r"}).validate()  # as on a model
        return Variant(kind, tuple(sorted(params.items())))
    raise ValueError(f"unknown variant kind {kind!r} in {spec!r}; use deit, tome:r=N, tomato:sim=S "
                     "or hybrid:sim=S,r=N")


def canonical(spec: str | Variant) -> str:
    """The canonical spec of ``spec``; the text itself when it does not parse (a folder
    written by another version stays readable)."""
    try:
        return parse(spec).spec
    except ValueError:
        return str(spec)


def label(spec: str | Variant) -> str:
    """:attr:`Variant.label` of ``spec``; the text itself when it does not parse."""
    try:
        return parse(spec).label
    except ValueError:
        return str(spec)


def order(specs: Iterable[str]) -> list[str]:
    """``specs`` without duplicates, in :attr:`Variant.sort_key` order; specs that do not
    parse go last, alphabetically."""
    def key(spec: str) -> tuple:
        try:
            return (0, parse(spec).sort_key, "")
        except ValueError:
            return (1, (), spec)

    return sorted(dict.fromkeys(specs), key=key)

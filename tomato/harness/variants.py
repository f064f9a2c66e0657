"""Model variants named by one spec string.

    deit                               the unpatched model (also: none, base, baseline)
    tome:r=2                           ToMe, r tokens merged in every block
    tomato:sim=1e-7                    ToMato with a fixed threshold
    tomato:keep=0.85                   ToMato keeping at most 85% of the patch tokens
    tomato:tokens=150                  ToMato keeping at most 150 patch tokens
    tomato:sim=1e-7,method=parallel    any ToMato setting: method, metric, rule

:func:`parse` turns a spec into a :class:`Variant`; ``Variant.apply(model)`` patches a timm
model in place (undoing any earlier patch), and ``Variant.spec`` is the canonical string
used to name results.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from ..core import pipeline, patch

_BASELINE = {"deit", "none", "base", "baseline", "vit"}
_TOMATO_KEYS = {"sim": float, "keep": float, "keep_ratio": float, "tokens": int,
                "method": str, "metric": str, "rule": str}


@dataclass(frozen=True)
class Variant:
    """kind: "deit" | "tome" | "tomato"; params: sorted (name, value) pairs."""

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
        """Short human label for plots and tables, e.g. ``ToMato sim=1e-07``."""
        names = {"deit": "baseline", "tome": "ToMe", "tomato": "ToMato"}
        return (names[self.kind] + " " + " ".join(f"{k}={v}" for k, v in self.params)).strip()

    def get(self, name: str, default: Any = None) -> Any:
        return dict(self.params).get(name, default)

    def apply(self, model: nn.Module) -> nn.Module:
        """Patch ``model`` in place for this variant and return it."""
        if hasattr(model, "_tomato"):
            patch.remove(model)
        if self.kind == "tome":
            patch.tome(model)
            model.r = self.get("r", 0)
        elif self.kind == "tomato":
            patch.timm(model)
            for name, value in self.params:  # method/metric/rule first, then the threshold
                if name in ("method", "metric", "rule"):
                    setattr(model, name, value)
            for name, value in self.params:
                if name in ("sim", "keep_ratio", "tokens"):
                    setattr(model, name, value)
        return model


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
        try:
            r = int(pairs["r"])
        except ValueError:
            raise ValueError(f"variant {spec!r}: r must be an integer") from None
        if r < 0:
            raise ValueError(f"variant {spec!r}: r must be >= 0")
        return Variant("tome", (("r", r),))
    if kind == "tomato":
        params: dict[str, Any] = {}
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
        budgets = [k for k in ("sim", "keep_ratio", "tokens") if k in params]
        if len(budgets) != 1:
            raise ValueError(f"variant {spec!r}: give exactly one of sim, keep or tokens")
        pipeline.Settings(**params).validate()  # same errors as setting them on a model
        return Variant("tomato", tuple(sorted(params.items())))
    raise ValueError(f"unknown variant kind {kind!r} in {spec!r}; use deit, tome:r=N or tomato:sim=S")

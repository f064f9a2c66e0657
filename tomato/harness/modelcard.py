"""The model card of a model trained here: its one writer and its one reader.

A card is ``model_card.json`` beside ``model.safetensors`` (float32 weights). It says
how the weights were made (recipe, every hyperparameter, the per-epoch curve, wall time,
machine, versions, seed, commit, the hash of the training file list), what they are
(timm model name, classes in head order with their wnids and names, sha256 of the file
and of the state dict) and how to feed them (the evaluation transform), with val
top-1/top-5 at the final resolution.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from .provenance import jsonable, state_dict_sha256
from .results import atomic_write_text

__all__ = ["CARD_FILE", "WEIGHTS_FILE", "ModelCard", "card_for", "read_card", "write_card"]

CARD_FILE = "model_card.json"
WEIGHTS_FILE = "model.safetensors"
_SCHEMA = "tomato-model-card/1"


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_weights(path: Path, model: nn.Module) -> dict[str, Any]:
    """``model``'s float32 state dict as safetensors at ``path`` (atomically); returns it."""
    from safetensors.torch import save_file

    sd = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(sd, str(tmp))
    os.chmod(tmp, 0o644)
    tmp.replace(path)
    return sd


def write_card(out: Path, model: nn.Module, **fields: Any) -> dict[str, Any]:
    """Write ``model``'s float32 weights and its card into ``out``; returns the card.

    ``fields``: recipe, classes ``[(wnid, name), ...]`` in head order, eval_transform,
    val, curve, wall_s, skipped, data, provenance.
    """
    weights = out / WEIGHTS_FILE
    sd = write_weights(weights, model)
    recipe = fields.pop("recipe")
    classes = fields.pop("classes")
    card = {
        "schema": _SCHEMA,
        "model": recipe.student,
        "num_classes": len(classes),
        "classes": [{"index": i, "wnid": w, "name": n} for i, (w, n) in enumerate(classes)],
        "weights_file": WEIGHTS_FILE,
        "weights_file_sha256": _file_sha256(weights),
        "weights_sha256": state_dict_sha256(sd),
        "recipe": recipe.as_dict(),
        "epochs": {p.name: {"epochs": p.epochs, "resolution": p.resolution, "model": p.model}
                   for p in recipe.phases},
        "seed": recipe.seed,
        **fields,
    }
    atomic_write_text(out / CARD_FILE, json.dumps(jsonable(card), indent=2) + "\n")
    return card


@dataclass(frozen=True)
class ModelCard:
    """What loading and scoring a trained model needs from its card."""

    path: Path
    model: str
    wnids: tuple[str, ...]
    names: tuple[str, ...]
    size: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    top1: float | None
    raw: dict[str, Any]

    @property
    def num_classes(self) -> int:
        return len(self.wnids)


def read_card(path: str | Path) -> ModelCard:
    """The card at ``path`` (the JSON itself, or its folder); ValueError when it is not one."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / CARD_FILE
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"model card {path} cannot be read ({type(e).__name__}: {e})") from None
    if raw.get("schema") != _SCHEMA:
        raise ValueError(f"{path} is not a tomato model card (schema {raw.get('schema')!r}, expected {_SCHEMA!r})")
    try:
        t = raw["eval_transform"]
        return ModelCard(path=path, model=str(raw["model"]), wnids=tuple(str(c["wnid"]) for c in raw["classes"]),
                         names=tuple(str(c["name"]) for c in raw["classes"]), size=int(t["size"]),
                         interpolation=str(t["interpolation"]), mean=tuple(float(v) for v in t["mean"]),
                         std=tuple(float(v) for v in t["std"]), top1=(raw.get("val") or {}).get("top1"), raw=raw)
    except (KeyError, TypeError, ValueError) as e:
        what = f"missing {e}" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
        raise ValueError(f"model card {path} is incomplete ({what}); write it again with python -m tomato train, "
                         f"or restore the committed card") from None


def card_for(checkpoint: str | Path) -> ModelCard | None:
    """The card beside a weights file that names that file, or None."""
    checkpoint = Path(checkpoint).expanduser()
    candidate = checkpoint.with_name(CARD_FILE)
    if candidate.is_file():
        card = read_card(candidate)
        if card.raw.get("weights_file") == checkpoint.name:
            return card
    return None


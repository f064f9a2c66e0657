"""Loading timm Vision Transformers with real weights, and saying honestly where they came from.

Three sources, in order of preference (see :func:`load`):

1. a local checkpoint file (``.pth/.pt/.bin`` or ``.safetensors``; original DeiT/ViT key
   layouts are converted with timm's own filter);
2. timm's pretrained weights (Hugging Face hub, or its local cache when offline);
3. random initialisation, only when asked for: numbers from it are NOT accuracy.

Every load returns a :class:`WeightsInfo` whose ``sha256`` depends only on the weights,
so two runs can be checked to have used the same model whatever the source.
"""
from __future__ import annotations

import difflib
import inspect
import logging
import os
import socket
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import timm
import torch
from torch import nn

from .modelcard import WEIGHTS_FILE, card_for
from .provenance import state_dict_sha256

__all__ = ["DEFAULT_MODEL", "SUPPORTED_MODULES", "WEIGHTS_DIR", "WeightsInfo", "check_supported", "load",
           "read_checkpoint", "resolve_checkpoint"]

_log = logging.getLogger(__name__)

DEFAULT_MODEL = "deit_base_patch16_224"
#: Where the model trained here lives (weights + model card), in the checkout.
#: :meta hide-value:
WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "data" / "weights"
_TORCH_SUFFIXES = frozenset({".pth", ".pt", ".bin"})
_SAFETENSORS_SUFFIX = ".safetensors"
_WRAPPER_KEYS = ("model", "state_dict")
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
#: timm modules whose models are (plain or distilled) VisionTransformers: token counts,
#: ToMe and ToMato all need one.
SUPPORTED_MODULES: tuple[str, ...] = ("vision_transformer", "deit")


@dataclass(frozen=True)
class WeightsInfo:
    """Where a model's weights came from.

    ``source`` is ``"checkpoint:<abs path>"``, ``"timm-pretrained:<hub id or url>"`` or
    ``"random-init:seed=<n>"``; ``pretrained`` is False only for random init;
    ``sha256`` is :func:`state_dict_sha256` of the loaded model.
    """

    model: str
    source: str
    pretrained: bool
    sha256: str
    #: wnids in head order, from the model card of a model trained here; None for an
    #: ImageNet-1k head (labels are then ImageNet indices).
    classes: tuple[str, ...] | None = None
    card: str | None = None


# --------------------------------------------------------------------------- hashing
# --------------------------------------------------------------------------- names
def _close_names(name: str, limit: int = 8) -> list[str]:
    """A few timm model names resembling ``name``, for error messages."""
    names = timm.list_models()
    close = difflib.get_close_matches(name, names, n=limit, cutoff=0.6)
    if not close:
        stem = name.split(".")[0].split("_")[0]
        close = timm.list_models(f"*{stem}*")[:limit] if stem else []
    return close or timm.list_models("*deit*")[:limit]


def _check_name(name: str) -> None:
    """Raise ValueError for a name timm does not know (architecture or pretrained tag)."""
    from timm.models import split_model_name_tag

    arch, tag = split_model_name_tag(name)
    if not timm.is_model(arch):
        raise ValueError(f"Unknown timm model {name!r}. Close names: {', '.join(_close_names(name))}")
    if tag and name not in timm.list_pretrained(name):
        raise ValueError(
            f"Unknown pretrained tag {tag!r} for {arch!r}. Known: {', '.join(timm.list_pretrained(arch + '.*'))}"
        )


def check_supported(name: str) -> None:
    """Raise ValueError unless ``name`` is a timm model the harness can run.

    Checked from timm's registry alone, before any weights are created or downloaded:
    every command counts the patch tokens of a timm VisionTransformer (``deit_*``,
    ``vit_*``), so a CNN such as ``resnet18`` is refused up front.
    """
    _check_name(name)
    from timm.models import is_model_in_modules, split_model_name_tag

    arch, _ = split_model_name_tag(name)
    if not is_model_in_modules(arch, list(SUPPORTED_MODULES)):
        module = next((m for m in timm.list_modules() if is_model_in_modules(arch, [m])), "another family")
        raise ValueError(
            f"model {name!r} is not supported: it comes from timm's {module} module, and the harness runs "
            f"plain timm Vision Transformers with a patch grid (timm's vision_transformer and deit modules; "
            f"e.g. --model {DEFAULT_MODEL} or deit_tiny_patch16_224)"
        )
    # Built on the meta device: no memory, no weights, no download, in well under a second.
    with torch.device("meta"):
        skeleton = timm.create_model(arch, pretrained=False)
    if getattr(skeleton, "cls_token", None) is None:
        raise ValueError(f"model {name!r} has no class token (it pools its patch tokens or uses registers "
                         f"only): ToMato keeps the class token out of the merge and classifies from it; choose "
                         f"a ViT with a class token, e.g. --model {DEFAULT_MODEL}")
    if getattr(skeleton, "attn_pool", None) is not None:
        raise ValueError(f"model {name!r} has an attention-pooling head (global_pool='map'), which merging "
                         f"does not support; choose a ViT with a class token, e.g. --model {DEFAULT_MODEL}")


def _check_instance(model: nn.Module, name: str) -> None:
    # The registry check above covers timm's own names; this catches anything else
    # (e.g. a module whose entry point builds another class) before a forward is run.
    from timm.models.vision_transformer import VisionTransformer

    if not isinstance(model, VisionTransformer):
        raise ValueError(
            f"model {name!r} builds a {type(model).__name__}, not a timm VisionTransformer; "
            f"choose a deit_* or vit_* model"
        )


# --------------------------------------------------------------------------- checkpoints
def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside a checkpoint object: unwraps ``{"model": sd}`` and
    ``{"state_dict": sd}`` (also nested) and strips a DataParallel ``module.`` prefix."""
    while isinstance(obj, Mapping) and any(isinstance(obj.get(k), Mapping) for k in _WRAPPER_KEYS):
        obj = next(obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping))
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"Checkpoint {path} holds no state dict (got {type(obj).__name__})")
    not_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ValueError(
            f"Checkpoint {path} is not a state dict: non-tensor entries {not_tensors[:10]} "
            f"(expected tensors, optionally under 'model' or 'state_dict')"
        )
    sd = dict(obj)
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or ``.pth/.pt/.bin`` (torch, weights only).

    Raises FileNotFoundError naming the path, ValueError for an unsupported or
    non-state-dict file. Keys are returned as stored (no timm conversion).
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == _SAFETENSORS_SUFFIX:
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(str(path), device="cpu")
        except Exception as e:  # noqa: BLE001 - SafetensorError has no importable base
            raise ValueError(_unreadable(path, "safetensors", e)) from None
    elif suffix in _TORCH_SUFFIXES:
        try:
            obj = load_weights_only(path)
        except Exception as e:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError ...
            raise ValueError(_unreadable(path, "torch (read with weights_only=True)", e)) from None
    else:
        supported = sorted(_TORCH_SUFFIXES | {_SAFETENSORS_SUFFIX})
        raise ValueError(f"Unsupported checkpoint type {path} (expected one of {supported})")
    return _unwrap(obj, path)


def load_weights_only(path: Path | str) -> Any:
    """``torch.load`` with ``weights_only=True`` (tensors, numbers, strings, containers):
    a file the project reads back must never run code. torch's protocol warning is muted."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.load(path, map_location="cpu", weights_only=True)


def error_line(e: BaseException, limit: int = 200) -> str:
    """``"Type: first line of the message"``, at most ``limit`` characters: one line for an
    ``error:`` message, however long the library's own text."""
    text = str(e).strip()
    first = text.splitlines()[0] if text else ""
    reason = f"{type(e).__name__}: {first}" if first else type(e).__name__
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"


def _unreadable(path: Path, kind: str, e: Exception) -> str:
    reason = error_line(e)
    if "weights only load failed" in str(e).lower():
        # A training checkpoint (optimizer, args, plain floats: torch < 2.0 reads no floats)
        # is refused by the safe reader; the weights alone load everywhere.
        return (f"checkpoint {path} is not a readable {kind} file: it holds more than weights "
                f"({reason}). On a trusted machine save the state dict alone, e.g. "
                f"torch.save(ckpt['model'], 'weights.pth'), or convert it to .safetensors")
    return (f"checkpoint {path} is not a readable {kind} file ({reason}); it may be truncated or "
            f"not a checkpoint at all: download it again, or pass the right file to --checkpoint")


def _check_distilled(model: nn.Module, sd: Mapping[str, torch.Tensor], path: Path) -> None:
    """Refuse a distilled DeiT checkpoint (dist_token, head_dist) for a plain model and
    the reverse, naming the model to use instead of failing in a reshape."""
    in_file = "dist_token" in sd or any(k.startswith("head_dist.") for k in sd)
    in_model = getattr(model, "dist_token", None) is not None
    if in_file and not in_model:
        raise ValueError(
            f"checkpoint {path} is a distilled DeiT (it has dist_token/head_dist) but "
            f"{type(model).__name__} has no distillation token; use the distilled model, "
            f"e.g. --model deit_base_distilled_patch16_224"
        )
    if in_model and not in_file:
        raise ValueError(
            f"checkpoint {path} has no distillation token but the model is a distilled DeiT; "
            f"use the plain model, e.g. --model deit_base_patch16_224"
        )


def _timm_filter(model: nn.Module, sd: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Convert original (e.g. facebookresearch/deit) key layouts with timm's own filter for
    the model's family; a no-op for families without one."""
    fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if fn is None:
        return sd
    kwargs = {}
    # timm's DeiT entry points pass adapt_layer_scale=True (DeiT-III 'gamma_1' keys);
    # it only touches 'gamma_' keys, so it is safe for every ViT.
    if "adapt_layer_scale" in inspect.signature(fn).parameters:
        kwargs["adapt_layer_scale"] = True
    try:
        return fn(sd, model, **kwargs)
    except Exception as e:  # noqa: BLE001 - the filter's failures are shape/key errors
        raise ValueError(f"timm could not convert checkpoint {path} for {type(model).__name__}: {e}") from e


def _load_checkpoint_into(model: nn.Module, path: Path) -> None:
    """Strictly load ``path`` into ``model``; ValueError listing key/shape mismatches."""
    sd = read_checkpoint(path)
    _check_distilled(model, sd, path)
    sd = _timm_filter(model, sd, path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"Checkpoint {path} does not match {type(model).__name__}: "
            f"{len(missing)} missing keys {missing[:10]}, {len(unexpected)} unexpected keys {unexpected[:10]}"
        )
    bad_shapes = [
        f"{k}: {tuple(sd[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items() if sd[k].shape != v.shape
    ]
    if bad_shapes:
        raise ValueError(f"Checkpoint {path} has {len(bad_shapes)} shape mismatches: {bad_shapes[:10]}")
    model.load_state_dict(sd, strict=True)


# --------------------------------------------------------------------------- hub
def _hub_reachable(endpoint: str, timeout: float = 3.0) -> bool:
    """Quick TCP probe of the hub endpoint.

    huggingface_hub retries a failed connection for ~50 s before giving up; probing first
    lets an offline machine fail (or fall back) at once. With a proxy configured the
    probe says nothing, so it reports True and lets the hub client decide.
    """
    if any(os.environ.get(v) for v in _PROXY_VARS):
        return True
    url = urlparse(endpoint)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    if not host:
        return True
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    # A daemon thread bounds the wait: DNS resolution ignores the socket timeout.
    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 1.0)
    return bool(result and result[0])


def _cached_hub_file(hub_id: str, filename: str | None) -> str | None:
    """Path of ``hub_id``'s weights in the local Hugging Face cache, or None."""
    from huggingface_hub import try_to_load_from_cache

    repo, _, revision = hub_id.partition("@")
    for fname in [filename] if filename else ["model.safetensors", "pytorch_model.bin"]:
        found = try_to_load_from_cache(repo, fname, revision=revision or None)
        if isinstance(found, str):  # may also be None or the _CACHED_NO_EXIST sentinel
            return found
    return None


def _offline_message(name: str, where: str, error: str) -> str:
    """The RuntimeError text: what failed and the three ways forward."""
    page = where if "://" in where else f"https://huggingface.co/{where}"
    return (
        f"Could not get pretrained weights for {name!r} ({error}). To use real weights, either\n"
        f"  1. connect to the internet so timm can download {where!r} (it is cached afterwards), or\n"
        f"  2. download the checkpoint on a machine that is online (e.g. from {page}"
        f" or the model's original release) and pass checkpoint=/path/to/file.pth"
        f" (CLI: --checkpoint /path/to/file.pth), or\n"
        f"  3. pass random_fallback=True (CLI: --random-weights) for a smoke run with random weights;"
        f" its numbers are NOT accuracy."
    )


def _create_pretrained(name: str) -> tuple[nn.Module, str]:
    """timm's pretrained model and its source id; raises RuntimeError (with instructions)
    when the weights cannot be obtained."""
    import huggingface_hub.constants as hf_constants
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    hub_id = cfg.hf_hub_id if cfg is not None else None
    url = cfg.url if cfg is not None else None
    where = hub_id or url
    if not where:
        # timm would silently fall back to random init here; refuse instead.
        raise RuntimeError(
            f"timm has no pretrained weights for {name!r}: pass checkpoint=/path/to/file.pth"
            f" (CLI: --checkpoint) or random_fallback=True (CLI: --random-weights; NOT accuracy)."
        )

    overlay: dict[str, Any] = {}
    if hub_id and not hf_constants.HF_HUB_OFFLINE and not _hub_reachable(hf_constants.ENDPOINT):
        cached = _cached_hub_file(hub_id, cfg.hf_hub_filename)
        if cached is None:
            raise RuntimeError(
                _offline_message(name, hub_id, f"{hf_constants.ENDPOINT} is unreachable and nothing is cached")
            )
        _log.info("hub unreachable; loading %s from the local cache %s", hub_id, cached)
        overlay["file"] = cached  # timm's own loader, filter included, reads the cached file
    try:
        model = timm.create_model(name, pretrained=True, **({"pretrained_cfg_overlay": overlay} if overlay else {}))
    except Exception as e:  # noqa: BLE001 - hub/httpx/urllib errors have no common base
        raise RuntimeError(_offline_message(name, where, f"{type(e).__name__}: {e}")) from e
    return model, f"timm-pretrained:{where}"


def _create_random(name: str, seed: int) -> nn.Module:
    """Randomly initialised model, deterministic for ``seed``; the caller's RNG is untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return timm.create_model(name, pretrained=False)


# --------------------------------------------------------------------------- public
def resolve_checkpoint(checkpoint: str | Path) -> Path:
    """A checkpoint path, or the short name of a model under ``data/weights/`` (the
    folder name, e.g. ``deit-tiny-imagenette``); FileNotFoundError naming both."""
    path = Path(checkpoint).expanduser()
    if path.is_file():
        return path.resolve()
    short = WEIGHTS_DIR / str(checkpoint)
    if "/" not in str(checkpoint) and (short / WEIGHTS_FILE).is_file():
        return (short / WEIGHTS_FILE).resolve()
    known = sorted(p.name for p in WEIGHTS_DIR.iterdir() if (p / WEIGHTS_FILE).is_file()) if WEIGHTS_DIR.is_dir() else []
    raise FileNotFoundError(f"Checkpoint file not found: {path.resolve()}"
                            + (f" (short names of the models trained here: {', '.join(known)})" if known else ""))


def _with_card(model: nn.Module, card: Any) -> None:
    """Make timm's data config of ``model`` the card's evaluation transform (resize to
    size x size, no centre crop), so every command feeds it as it was evaluated."""
    model.pretrained_cfg = {**dict(getattr(model, "pretrained_cfg", {}) or {}),
                            "input_size": (3, card.size, card.size), "interpolation": card.interpolation,
                            "mean": tuple(card.mean), "std": tuple(card.std), "crop_pct": 1.0,
                            "crop_mode": "squash", "num_classes": card.num_classes}


def load(
    name: str | None = None,
    checkpoint: str | Path | None = None,
    pretrained: bool = True,
    random_fallback: bool = False,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, WeightsInfo]:
    """Create timm model ``name`` in eval mode on ``device`` and say where its weights came from.

    - ``checkpoint``: load that file strictly (FileNotFoundError if missing, ValueError
      listing mismatched keys); original DeiT/ViT layouts are converted by timm.
    - else ``pretrained``: timm's weights from the hub (or its cache when offline). If they
      cannot be had: with ``random_fallback`` log a WARNING and use random init, otherwise
      raise RuntimeError explaining ``--checkpoint`` / ``--random-weights``.
    - else (or on fallback): random init seeded with ``seed`` (NOT accuracy).

    A checkpoint with a model card beside it (a model trained here, see
    :mod:`tomato.harness.modelcard`) brings its model name, class count, classes and
    evaluation transform; ``name`` may then be None (or must match the card).
    ``checkpoint`` may also be the short name of a folder under ``data/weights/``.

    Unknown ``name`` -> ValueError listing close timm names; a model that is not a timm
    VisionTransformer (e.g. ``resnet18``) -> ValueError before any weights are made.
    """
    card = None
    if checkpoint is not None:
        path = resolve_checkpoint(checkpoint)
        card = card_for(path)
        if card is not None and name not in (None, card.model):
            raise ValueError(f"checkpoint {path} is a {card.model} (its model card {card.path} says so), not "
                             f"{name}; leave --model out or pass --model {card.model}")
    name = name or (card.model if card is not None else DEFAULT_MODEL)
    check_supported(name)
    if checkpoint is not None:
        extra: dict[str, Any] = {}
        if card is not None:
            extra["num_classes"] = card.num_classes
            if card.size != 224:  # a test recipe's small model: same keys, grid resampled on the fly
                extra["dynamic_img_size"] = True
        model = timm.create_model(name, pretrained=False, **extra)
        _load_checkpoint_into(model, path)
        if card is not None:
            _with_card(model, card)
        source, is_pretrained = f"checkpoint:{path}", True
    else:
        model = None
        if pretrained:
            try:
                model, source = _create_pretrained(name)
                is_pretrained = True
            except RuntimeError as e:
                if not random_fallback:
                    raise
                _log.warning("%s\nFalling back to RANDOM weights (seed=%d): results are NOT accuracy.", e, seed)
        if model is None:
            model = _create_random(name, seed)
            source, is_pretrained = f"random-init:seed={seed}", False

    _check_instance(model, name)
    model.eval()
    info = WeightsInfo(model=name, source=source, pretrained=is_pretrained, sha256=state_dict_sha256(model),
                       classes=card.wnids if card is not None else None,
                       card=str(card.path) if card is not None else None)
    _log.info("loaded %s from %s (sha256 %s)", name, source, info.sha256[:12])
    return model.to(device), info

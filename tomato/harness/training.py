"""Train the book's model from scratch: resumable, deterministic, with a model card.

``train(root, out, recipe)`` runs the phases of a :class:`~tomato.harness.recipe.Recipe`
(a convnet teacher, then the distilled DeiT at low and full resolution), evaluates on
``val/`` after every epoch and, at the end, writes ``model.safetensors`` (float32) and
``model_card.json`` into ``out``.

Run folder (one owner at a time: the same file lock as evaluation runs)::

    config.json        the recipe and data; a folder holding another run is refused
    checkpoint.pt      after every epoch, atomically: weights, optimizer, curve, clock
    curve.csv          one row per epoch: loss, lr, val top-1/top-5, images/s
    skipped.csv        photos that could not be decoded (path, reason)
    model.safetensors, model_card.json   when every phase is done

Determinism: every random draw of an epoch (order, crops, flips, Mixup, drop-path) comes
from generators seeded with (seed, phase, epoch) at the epoch's start, and a checkpoint
holds everything else; so a run killed at any moment and resumed from its last
checkpoint ends with exactly the weights of an uninterrupted one (same machine, same
thread count).
"""
from __future__ import annotations

import csv
import io
import logging
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
import torch.nn.functional as F
from torch import nn

from . import provenance
from .data import wnid_name
from .modelcard import CARD_FILE, write_card, write_weights
from .recipe import Phase, Recipe
from .speed import torch_threads
from .results import atomic_write_text, claim_folder, release_refused
from .trainset import Split, check_splits, decode_split, eval_batches, file_list_sha256, train_batch

__all__ = ["CHECKPOINT_FILE", "train"]

_log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
TEACHER_FILE = "teacher.safetensors"  # a run's trained teacher, for --teacher of a later run
CONFIG_FILE = "config.json"
CURVE_FILE = "curve.csv"
SKIPPED_FILE = "skipped.csv"
_CURVE_COLUMNS = ("phase", "epoch", "resolution", "train_loss", "lr", "val_top1", "val_top5", "img_s", "wall_s")


# --------------------------------------------------------------------------- models
def _build(phase: Phase, num_classes: int) -> nn.Module:
    """A fresh timm model for ``phase`` (students resample their 14 x 14 position
    embeddings to the phase's grid on the fly)."""
    kwargs: dict[str, Any] = {"num_classes": num_classes}
    if phase.role == "student":
        kwargs.update(dynamic_img_size=True, drop_path_rate=phase.drop_path)
    model = timm.create_model(phase.model, pretrained=False, **kwargs)
    if hasattr(model, "set_distilled_training"):
        model.set_distilled_training(True)  # forward returns (class head, distillation head)
    return model


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX).

    Only there does bfloat16 autocast pay: measured on a 2-core AVX2-only EPYC, a
    bfloat16 matmul ran at 0.3 GFLOP/s against 125 in float32 (DeiT-Ti trained 20x
    slower), while an AVX512-BF16 EPYC trained ~1.5x faster in bfloat16."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def _seed_epoch(seed: int, phase_index: int, epoch: int) -> None:
    # The trainer owns the process while it runs: seeding the global generators is what
    # makes timm's Mixup (numpy) and drop-path (torch) replay exactly after a resume.
    s = (seed * 1_000_003 + phase_index * 1_009 + epoch) % 2**31
    torch.manual_seed(s)
    np.random.seed(s)
    random.seed(s)


@torch.no_grad()
def _evaluate(model: nn.Module, val: Split, resolution: int, mean, std, batch_size: int = 128,
              bf16: bool = False, device: str = "cpu") -> tuple[float, float]:
    """(top-1, top-5) in % of ``model`` on the whole of ``val`` at ``resolution``
    (the run's precision for the per-epoch curve; float32 for the card, as ``eval`` runs)."""
    was_training = model.training
    model.eval()
    hit1 = hit5 = 0
    for x, y in eval_batches(val, resolution, batch_size, mean, std):
        x, y = x.to(device), y.to(device)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x).float()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hit1 += int((top[:, 0] == y).sum())
        hit5 += int((top == y[:, None]).any(1).sum())
    model.train(was_training)
    n = len(val.labels)
    return 100 * hit1 / n, 100 * hit5 / n


# --------------------------------------------------------------------------- checkpoints
def _save(path: Path, state: dict[str, Any]) -> None:
    """torch.save into a temporary file beside ``path``, then rename: never half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_decoded(train: Split, val: Split, classes: Sequence[str], recipe: Recipe, out: Path) -> None:
    """ValueError before any training step: a class left without a readable training
    photo, no readable val photo, or fewer training photos than a phase's batch."""
    counts = torch.bincount(train.labels, minlength=len(classes)).tolist()
    empty = [w for w, c in zip(classes, counts) if c == 0]
    where = f"(see {out / SKIPPED_FILE})"
    if empty:
        raise ValueError(f"no training photo of class {', '.join(empty[:3])} could be read {where}: a class the "
                         f"model never sees cannot be learnt; fix or remove its folder")
    if len(val.labels) == 0:
        raise ValueError(f"none of the val photos could be read {where}: the run could not be evaluated")
    batch = max(ph.batch_size for ph in recipe.phases)
    if len(train.labels) < batch:
        raise ValueError(f"{len(train.labels)} training photos could be read, fewer than the recipe's batch of "
                         f"{batch}: add photos, or use a recipe with a smaller batch_size")


def _csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """CSV text through the csv module: a quote or comma in a path stays one field."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _load_state(path: Path) -> dict[str, Any]:
    """A run's checkpoint, read with ``weights_only=True``: tensors, numbers, strings and
    containers only, so a run folder from someone else can never run code here."""
    from .models import error_line, load_weights_only

    try:
        state = load_weights_only(path)
    except Exception as e:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError ... all mean "not ours"
        raise ValueError(f"{path} is not a training checkpoint of ours (read with weights_only=True, nothing in "
                         f"it was run: {error_line(e, 160)}); delete it to start the run again, or choose "
                         f"another --out") from None
    if not isinstance(state, dict) or "phase" not in state or "epoch" not in state:
        raise ValueError(f"{path} is not a training checkpoint of ours (no phase and epoch); delete it to start "
                         f"the run again, or choose another --out")
    return state


def _write_curve(out: Path, curve: list[dict[str, Any]]) -> None:
    lines = [",".join(_CURVE_COLUMNS)]
    lines += [",".join(str(row[c]) for c in _CURVE_COLUMNS) for row in curve]
    atomic_write_text(out / CURVE_FILE, "\n".join(lines) + "\n")


def _claim(out: Path, config: dict[str, Any]):
    """Take ``out`` for this run: a new folder, or one holding this same run (resume).

    ValueError when it holds anything else (another run, or unrelated files)."""
    import json

    fresh_lock = not (out / ".lock").exists()
    out, created, lock = claim_folder(out)
    try:
        existing = out / CONFIG_FILE
        if existing.is_file():
            if json.loads(existing.read_text()) != config:
                raise ValueError(f"--out {out} holds another training run (its {CONFIG_FILE} differs: other data, "
                                 f"recipe, seed, threads, --init or --teacher); choose a new folder")
        else:
            foreign = sorted(p.name for p in out.iterdir() if p.name != ".lock")
            if foreign:
                raise ValueError(f"--out {out} is not empty and holds no training run ({', '.join(foreign[:5])}); "
                                 f"choose a new or empty folder")
            atomic_write_text(existing, json.dumps(config, indent=2, sort_keys=True) + "\n")
    except BaseException:
        release_refused(out, created, lock, fresh_lock)
        raise
    return out, lock


# --------------------------------------------------------------------------- one epoch
def _loss_fn(phase: Phase, num_classes: int) -> tuple[Callable | None, Callable]:
    """(mixer or None, loss(logits, target)) for a phase, from timm's parts."""
    from timm.data import Mixup
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    if phase.mixup_prob > 0 and (phase.mixup_alpha > 0 or phase.cutmix_alpha > 0):
        mixer = Mixup(mixup_alpha=phase.mixup_alpha, cutmix_alpha=phase.cutmix_alpha, prob=phase.mixup_prob,
                      label_smoothing=phase.label_smoothing, num_classes=num_classes)
        return mixer, SoftTargetCrossEntropy()
    return None, LabelSmoothingCrossEntropy(phase.label_smoothing)


def _run_epoch(model: nn.Module, teacher: nn.Module | None, phase: Phase, train: Split, optimizer, scheduler,
               epoch: int, mean, std, progress: bool, desc: str, bf16: bool,
               device: str = "cpu") -> tuple[float, float]:
    """One pass over ``train`` (last partial batch dropped, bfloat16 autocast when
    ``bf16``); returns (mean loss, images/s)."""
    from tqdm.auto import tqdm

    mixer, criterion = _loss_fn(phase, int(train.labels.max()) + 1)
    steps = len(train.labels) // phase.batch_size
    order = torch.randperm(len(train.labels))
    model.train()
    total, seen, started = 0.0, 0, time.perf_counter()
    bar = tqdm(range(steps), desc=desc, unit="step", disable=not progress, leave=False)
    for step in bar:
        scheduler.step_update(epoch * steps + step)
        idx = order[step * phase.batch_size:(step + 1) * phase.batch_size]
        # Crops on the CPU (their random draws replay on resume), the step on ``device``.
        x = train_batch(train.images[idx], phase.resolution, phase.crop_scale, mean, std).to(device)
        y = train.labels[idx].to(device)
        target: torch.Tensor = y
        if mixer is not None:
            x, target = mixer(x, y)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
            hard = None
            if teacher is not None and phase.distill:
                with torch.no_grad():
                    hard = teacher(x).argmax(1)
        if isinstance(out, tuple):  # distilled DeiT: class head, distillation head
            cls, dist = out[0].float(), out[1].float()
            # DeiT's hard-label distillation: half the loss from the labels, half from
            # the teacher's decisions; without a teacher both heads learn the labels.
            loss = 0.5 * criterion(cls, target) + 0.5 * (F.cross_entropy(dist, hard) if hard is not None
                                                         else criterion(dist, target))
        else:
            loss = criterion(out.float(), target)
        if not torch.isfinite(loss):
            raise RuntimeError(f"training diverged: loss {loss.item()} at {desc}, step {step}; lower the "
                               f"phase's lr in tomato/harness/recipe.py")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach())
        seen += len(idx)
        rate = seen / (time.perf_counter() - started)
        bar.set_postfix(loss=f"{total / (step + 1):.3f}", img_s=f"{rate:.0f}")
    return total / max(steps, 1), seen / (time.perf_counter() - started)


# --------------------------------------------------------------------------- the run
def train(root: str | Path, out: str | Path, recipe: Recipe, *, init: str | Path | None = None,
          teacher: str | Path | None = None, threads: int = 2, progress: bool = True,
          on_epoch: Callable[[dict[str, Any]], None] | None = None, device: str = "cpu") -> dict[str, Any]:
    """Train ``recipe`` on ``root/train``, evaluate on ``root/val``; returns the model card.

    Resumes from ``out/checkpoint.pt`` when ``out`` holds this same run. Raises
    ValueError (before any compute) for a bad data layout or an occupied ``out``.
    ``init``: for a recipe that continues another (``recipe.continues``), the finished
    model of that recipe (its ``model.safetensors``, card beside it); the new card keeps
    the parent's card, so the whole lineage stays in one file.
    ``teacher``: the ``teacher.safetensors`` an earlier run trained for the recipe's teacher
    phase; that phase is then skipped (the teacher is fixed, so retraining it only costs time)
    and the card names the teacher's weights by sha256.
    ``on_epoch`` is called with each curve row after its checkpoint is written.
    ``threads``: torch CPU threads for the run (results are reproducible per count).
    ``device``: where the steps run ("cuda": bfloat16 autocast where the GPU has it); the
    photos are decoded and cropped on the CPU, so a run may resume on another device.
    """
    with torch_threads(threads):
        return _train(root, out, recipe, init=init, teacher_file=teacher, threads=threads, progress=progress,
                      on_epoch=on_epoch, device=device)


def _parent(recipe: Recipe, init: str | Path | None, classes: list[str]) -> tuple[dict[str, Any], dict] | None:
    """(parent card, its weights) for a continuing recipe; None for one from random init.

    ValueError (one line) when ``init`` is missing, not needed, or not the model the
    recipe continues (other recipe, model or classes)."""
    from .modelcard import card_for
    from .models import read_checkpoint
    from .provenance import state_dict_sha256

    if not recipe.continues:
        if init is not None:
            raise ValueError(f"recipe {recipe.name!r} starts from random init; --init is for a recipe that "
                             f"continues another (e.g. imagenette-cpu-more)")
        return None
    if init is None:
        raise ValueError(f"recipe {recipe.name!r} continues the model of recipe {recipe.continues!r}: pass "
                         f"--init <that run's model.safetensors>")
    if not Path(init).expanduser().is_file():
        raise ValueError(f"--init {init}: file not found; give the model.safetensors of a finished "
                         f"{recipe.continues!r} run")
    card = card_for(init)
    if card is None:
        raise ValueError(f"--init {init}: no model card beside it names this file; give a model.safetensors "
                         f"written by 'python -m tomato train'")
    got = card.raw["recipe"]["name"]
    if got != recipe.continues or card.model != recipe.student or list(card.wnids) != classes:
        raise ValueError(f"--init {init} is a {card.model} of recipe {got!r} on {card.num_classes} classes; recipe "
                         f"{recipe.name!r} continues a {recipe.student} of recipe {recipe.continues!r} on these "
                         f"{len(classes)} classes")
    weights = read_checkpoint(init)
    if state_dict_sha256(weights) != card.raw["weights_sha256"]:
        raise ValueError(f"--init {init}: the weights are not those its model card describes (sha256 differs); "
                         f"use the file the card was written with")
    return card.raw, weights


def _given_teacher(recipe: Recipe, path: str | Path | None, num_classes: int) -> tuple[dict, str] | None:
    """(weights, sha256) of a teacher trained by an earlier run, checked against the
    recipe's teacher phase; None when none is given. ValueError (one line) otherwise."""
    from .models import error_line, read_checkpoint
    from .provenance import state_dict_sha256

    if path is None:
        return None
    phase = next((p for p in recipe.phases if p.role == "teacher"), None)
    if phase is None:
        raise ValueError(f"--teacher {path}: recipe {recipe.name!r} has no teacher phase to fill")
    try:
        weights = read_checkpoint(path)
        _build(phase, num_classes).load_state_dict(weights)
    except FileNotFoundError:
        raise ValueError(f"--teacher {path}: file not found; give the {TEACHER_FILE} of an earlier run") from None
    except (ValueError, RuntimeError) as e:
        raise ValueError(f"--teacher {path}: not a {phase.model} with {num_classes} classes "
                         f"({error_line(e, 120)})") from None
    return weights, state_dict_sha256(weights)


def _teacher_trained(state: dict[str, Any], recipe: Recipe) -> bool:
    """Whether the run in ``state`` has finished training its recipe's teacher phase."""
    at = next((i for i, p in enumerate(recipe.phases) if p.role == "teacher"), None)
    return (at is not None and state.get("teacher") is not None
            and (state["phase"] > at or state["epoch"] >= recipe.phases[at].epochs and state["phase"] == at))


def _train(root: str | Path, out: str | Path, recipe: Recipe, *, init: str | Path | None,
           teacher_file: str | Path | None, threads: int,
           progress: bool, on_epoch: Callable[[dict[str, Any]], None] | None, device: str = "cpu") -> dict[str, Any]:
    from timm.optim import create_optimizer_v2
    from timm.scheduler import CosineLRScheduler

    from .models import read_checkpoint

    recipe.validate()
    root = Path(root).expanduser().resolve()
    train_files, val_files = check_splits(root)
    classes = sorted(train_files)
    parent = _parent(recipe, init, classes)
    given = _given_teacher(recipe, teacher_file, len(classes))
    started = provenance.start()
    config = {"data": str(root), "recipe": provenance.jsonable(recipe.as_dict()), "classes": classes,
              "train_files_sha256": file_list_sha256(train_files), "val_files_sha256": file_list_sha256(val_files),
              "threads": threads}
    if parent is not None:
        config["init_weights_sha256"] = parent[0]["weights_sha256"]
    if given is not None:
        config["teacher_weights_sha256"] = given[1]
    out_dir, lock = _claim(Path(out), config)
    try:
        ckpt_path = out_dir / CHECKPOINT_FILE
        state: dict[str, Any] = (_load_state(ckpt_path) if ckpt_path.is_file()
                                 else {"phase": 0, "epoch": 0, "curve": [], "wall_s": 0.0})
        # The code that trained the model is the code of the run's first start, not of a resume.
        state.setdefault("started", started)
        if given is None and _teacher_trained(state, recipe) and not (out_dir / TEACHER_FILE).is_file():
            # A run stopped between its teacher's last epoch and the file (or made by older
            # code) still leaves the teacher a later run can reuse.
            taught = _build(next(p for p in recipe.phases if p.role == "teacher"), len(classes))
            taught.load_state_dict(state["teacher"])
            write_weights(out_dir / TEACHER_FILE, taught)
        # Chosen once per run, at its first start: a resume keeps the precision it began
        # with, so its weights stay those of an uninterrupted run.
        # (A checkpoint from before the choice existed was trained in bfloat16.)
        on_gpu = torch.device(device).type == "cuda"
        state.setdefault("precision", "bfloat16" if ckpt_path.is_file() or native_bf16()
                         or (on_gpu and torch.cuda.is_bf16_supported()) else "float32")
        bf16 = state["precision"] == "bfloat16"
        card_path = out_dir / CARD_FILE
        if state.get("done") and card_path.is_file():
            import json

            _log.info("%s: training already complete", out_dir)
            return json.loads(card_path.read_text())  # nothing to decode or evaluate again
        train_set = decode_split(train_files, progress=progress)
        val_set = decode_split(val_files, progress=progress)
        skipped = train_set.skipped + val_set.skipped
        atomic_write_text(out_dir / SKIPPED_FILE, _csv_text(("path", "reason"), skipped))
        _check_decoded(train_set, val_set, classes, recipe, out_dir)
        student_name = recipe.student
        cfg = timm.data.resolve_data_config({}, model=timm.create_model(student_name, pretrained=False,
                                                                        num_classes=len(classes)))
        mean, std = cfg["mean"], cfg["std"]
        num_classes = len(classes)
        teacher: nn.Module | None = None
        student_sd = state.get("student")
        if student_sd is None and parent is not None:
            student_sd = parent[1]
        if given is not None:
            state.setdefault("teacher", given[0])
        if state.get("teacher") is not None:
            teacher_phase = next(p for p in recipe.phases if p.role == "teacher")
            teacher = _build(teacher_phase, num_classes)
            teacher.load_state_dict(state["teacher"])
            teacher = teacher.to(device).eval()

        while state["phase"] < len(recipe.phases):
            pi, phase = state["phase"], recipe.phases[state["phase"]]
            if state["epoch"] >= phase.epochs or (phase.role == "teacher" and given is not None):
                state.update(phase=pi + 1, epoch=0, optimizer=None)
                continue
            _seed_epoch(recipe.seed, pi, -1)  # the phase's initialisation
            model = _build(phase, num_classes)
            if phase.role == "teacher" and state["epoch"] > 0:
                model.load_state_dict(state["teacher"])
            elif phase.role == "student" and student_sd is not None:
                model.load_state_dict(student_sd)
            model = model.to(device)
            if phase.role == "teacher":
                model = model.to(memory_format=torch.channels_last)
            optimizer = create_optimizer_v2(model, phase.opt, lr=phase.lr, weight_decay=phase.weight_decay)
            if state["epoch"] > 0 and state.get("optimizer") is not None:
                optimizer.load_state_dict(state["optimizer"])
            steps = len(train_set.labels) // phase.batch_size
            scheduler = CosineLRScheduler(optimizer, t_initial=phase.epochs * steps, lr_min=phase.min_lr,
                                          warmup_t=round(phase.warmup_epochs * steps), warmup_lr_init=phase.lr / 100,
                                          t_in_epochs=False)
            while state["epoch"] < phase.epochs:
                epoch = state["epoch"]
                _seed_epoch(recipe.seed, pi, epoch)
                t0 = time.perf_counter()
                desc = f"{phase.name} {epoch + 1}/{phase.epochs} @{phase.resolution}px"
                loss, rate = _run_epoch(model, teacher if phase.role == "student" else None, phase, train_set,
                                        optimizer, scheduler, epoch, mean, std, progress, desc, bf16, device)
                top1, top5 = _evaluate(model, val_set, phase.resolution, mean, std, bf16=bf16, device=device)
                row = {"phase": phase.name, "epoch": epoch + 1, "resolution": phase.resolution,
                       "train_loss": round(loss, 4), "lr": f"{optimizer.param_groups[0]['lr']:.3g}",
                       "val_top1": round(top1, 2), "val_top5": round(top5, 2), "img_s": round(rate, 1),
                       "wall_s": round(state["wall_s"] + time.perf_counter() - t0, 1)}
                state["curve"].append(row)
                state["wall_s"] = row["wall_s"]
                state["epoch"] = epoch + 1
                state["optimizer"] = optimizer.state_dict()
                if phase.role == "teacher":
                    state["teacher"] = model.state_dict()
                else:
                    state["student"] = student_sd = model.state_dict()
                _save(ckpt_path, state)
                _write_curve(out_dir, state["curve"])
                _log.info("%s: loss %.3f, val top-1 %.2f%%, top-5 %.2f%%, %.0f img/s", desc, loss, top1, top5, rate)
                if on_epoch is not None:
                    on_epoch(row)
            if phase.role == "teacher":
                teacher = model.eval()
                write_weights(out_dir / TEACHER_FILE, teacher)  # so a later run can reuse it (--teacher)

        # Same keys as the plain 224 px model; dynamic only so a test recipe's smaller
        # final resolution can be evaluated too.
        final = timm.create_model(student_name, pretrained=False, num_classes=num_classes, dynamic_img_size=True)
        final.load_state_dict(student_sd)
        top1, top5 = _evaluate(final.to(device), val_set, recipe.final_resolution, mean, std, bf16=False,
                               device=device)
        final = final.cpu()
        card = write_card(
            out_dir, final, recipe=recipe, classes=[(w, wnid_name(w)) for w in classes],
            eval_transform={"size": recipe.final_resolution, "resize": "squash to size x size, no centre crop",
                            "interpolation": cfg["interpolation"], "mean": list(mean), "std": list(std)},
            val={"top1": round(top1, 2), "top5": round(top5, 2), "images": len(val_set.labels),
                 "resolution": recipe.final_resolution, "split": str(root / "val")},
            curve=state["curve"], wall_s=state["wall_s"], precision=state["precision"],
            **({"parent": parent[0]} if parent else {}),
            # The teacher a run reused (``teacher``: train --teacher) or trained (``teacher_trained``),
            # by sha256, so a later run's card can name the run its teacher came from.
            **({"teacher": {"weights_sha256": given[1], "file": str(Path(teacher_file).expanduser().resolve())}}
               if given else {}),
            **({"teacher_trained": {"file": TEACHER_FILE, "weights_sha256": provenance.state_dict_sha256(
                read_checkpoint(out_dir / TEACHER_FILE))}} if (out_dir / TEACHER_FILE).is_file() else {}),
            skipped=[str(p) for p, _ in skipped],
            data={**{k: config[k] for k in ("data", "train_files_sha256", "val_files_sha256")},
                  "train_images": len(train_set.labels), "val_images": len(val_set.labels)},
            provenance=provenance.collect(state["started"], threads=threads, device=device,
                                          card_written_by=started["git"]),
        )
        state["done"] = True
        _save(ckpt_path, state)
        return card
    finally:
        lock.release()

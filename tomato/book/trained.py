"""The model trained here, as the book shows it: every word and number read from its model card.

:func:`card` reads ``data/weights/<name>/model_card.json`` (the one reader is
:func:`tomato.harness.modelcard.read_card`); :func:`summary` is the page's opening
paragraph, :func:`recipe_table` the hyperparameters of each phase, :func:`plot_curve` the
per-epoch curve, :func:`retrain_command` the one command that makes it again.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..harness import modelcard, models

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.figure import Figure

#: The short name of the book's model (a folder under data/weights/).
BOOK_MODEL = "deit-tiny-imagenette"

_PHASE_COLOURS = {"teacher": "tab:grey", "low-res": "tab:blue", "fine-tune": "tab:orange"}


def card(name: str = BOOK_MODEL) -> modelcard.ModelCard:
    """The card of ``name`` (a folder under ``data/weights/``, or a path to one)."""
    path = Path(name)
    return modelcard.read_card(path if path.is_dir() else models.WEIGHTS_DIR / name)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min"


def _machine(raw: dict[str, Any]) -> str:
    prov = raw.get("provenance") or {}
    machine = prov.get("machine") or {}
    cpu = prov.get("cpu_model") or machine.get("cpu_model") or "unknown CPU"
    threads = prov.get("threads") or machine.get("torch_threads")
    gpu = prov.get("gpu_name")
    gpu = None if not gpu or str(gpu).startswith("none") else gpu
    where = f"{gpu} GPU" if gpu else f"{cpu} CPU"
    return where + (f", {threads} threads" if threads and not gpu else "")


def summary(c: modelcard.ModelCard) -> str:
    """Markdown: what the model is, how it was made, and how well it does, from the card."""
    raw = c.raw
    val, data = raw["val"], raw["data"]
    teacher = [p for p in raw["recipe"]["phases"] if p["role"] == "teacher"]
    students = [p for p in raw["recipe"]["phases"] if p["role"] == "student"]
    epochs = ", then ".join(f"{p['epochs']} epoch{'s' * (p['epochs'] != 1)} at {p['resolution']} px"
                            for p in students)
    taught = (f", taught by a {teacher[0]['model']} trained here first ({teacher[0]['epochs']} epochs at "
              f"{teacher[0]['resolution']} px)") if teacher else ""
    commit = ((raw.get("provenance") or {}).get("git") or {}).get("commit", "unknown")[:7]
    where = Path(data["data"]).name
    return (f"**{c.model}** with a {c.num_classes}-class head, trained from scratch on the "
            f"{data['train_images']:,} training photos of `{where}`{taught}: {epochs}. "
            f"It took {_minutes(raw['wall_s'])} on {_machine(raw)} (code at `{commit}`). "
            f"On all {val['images']:,} held-out val photos at {val['resolution']} px it scores "
            f"**top-1 {val['top1']:.2f}%** and top-5 {val['top5']:.2f}% "
            f"(weights sha256 `{raw['weights_sha256'][:12]}…`).")


def recipe_table(c: modelcard.ModelCard) -> pd.DataFrame:
    """One row per phase: model, epochs, resolution and every hyperparameter."""
    import pandas as pd

    rows = []
    for p in c.raw["recipe"]["phases"]:
        mix = (f"Mixup {p['mixup_alpha']:g} / CutMix {p['cutmix_alpha']:g}, p={p['mixup_prob']:g}"
               if p["mixup_prob"] > 0 else "none")
        rows.append({"phase": p["name"], "model": p["model"], "epochs": p["epochs"], "px": p["resolution"],
                     "batch": p["batch_size"], "lr": f"{p['lr']:g}", "min lr": f"{p['min_lr']:g}",
                     "warm-up epochs": f"{p['warmup_epochs']:g}", "weight decay": f"{p['weight_decay']:g}",
                     "optimizer": p["opt"], "crop scale": "–".join(f"{s:g}" for s in p["crop_scale"]),
                     "mixing": mix, "label smoothing": f"{p['label_smoothing']:g}",
                     "drop path": f"{p['drop_path']:g}",
                     "loss": "½ labels + ½ teacher's hard labels" if p["distill"] else "labels"})
    return pd.DataFrame(rows)


def curve(c: modelcard.ModelCard) -> pd.DataFrame:
    """The per-epoch curve, numbered across phases."""
    import pandas as pd

    df = pd.DataFrame(c.raw["curve"])
    df["step"] = range(1, len(df) + 1)
    return df


def plot_curve(c: modelcard.ModelCard) -> Figure:
    """Val top-1 (at each phase's resolution) and training loss per epoch, one colour per phase."""
    import matplotlib.pyplot as plt

    df = curve(c)
    fig, (ax, loss_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    for phase, g in df.groupby("phase", sort=False):
        colour = _PHASE_COLOURS.get(phase)
        label = f"{phase} ({g['resolution'].iloc[0]} px)"
        ax.plot(g["step"], g["val_top1"], "o-", ms=3, color=colour, label=label)
        loss_ax.plot(g["step"], g["train_loss"], "o-", ms=3, color=colour, label=label)
    final = c.raw["val"]
    ax.axhline(final["top1"], color="black", lw=0.8, ls=":")
    ax.annotate(f"final: {final['top1']:.1f}% at {final['resolution']} px", (1, final["top1"]),
                textcoords="offset points", xytext=(2, 4), fontsize=8)
    ax.set(xlabel="epoch (all phases)", ylabel="val top-1 (%)", title="Val top-1 after each epoch")
    loss_ax.set(xlabel="epoch (all phases)", ylabel="training loss",
                title="Training loss (mixed targets: not comparable across phases)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    loss_ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def retrain_command(c: modelcard.ModelCard, data: str = "../shared/imagenette") -> str:
    """The command that trains this model again (same recipe and seed)."""
    raw = c.raw["recipe"]
    seed = f" --seed {raw['seed']}" if raw.get("seed") else ""
    return f"python -m tomato train --data {data} --out runs/{raw['name']} --recipe {raw['name']}{seed}"

"""The model trained here, as the book shows it: every word and number read from its model card.

:func:`card` reads ``data/weights/<name>/model_card.json`` (the one reader is
:func:`tomato.harness.modelcard.read_card`); :func:`summary` is the page's opening
paragraph, :func:`recipe_table` the hyperparameters of each phase, :func:`plot_curve` the
per-epoch curve, :func:`retrain_command` the commands that make it again. A model
trained in more than one run (a recipe that ``continues`` another) keeps each earlier
run's card under ``parent``; :func:`lineage` lists the runs, and every function here
shows them all.
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

# Teachers in greys, students in colours, by order of appearance: a new run's phases get
# their own colours without a table to keep up to date.
_TEACHER_COLOURS = ("tab:grey", "dimgrey", "black")
_STUDENT_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
                    "tab:olive", "tab:cyan")


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


def lineage(c: modelcard.ModelCard) -> list[dict[str, Any]]:
    """The cards of the runs that made the model, first run first (one for a model
    trained in one run; each later run's card holds the one before as ``parent``)."""
    runs, raw = [], c.raw
    while raw is not None:
        runs.append(raw)
        raw = raw.get("parent")
    return runs[::-1]


def _run_text(raw: dict[str, Any], last: bool, source: str | None = None) -> str:
    """One run as a clause: its teacher (``source``: the run that trained it, when reused),
    epochs, wall time, machine, precision, and its top-1 unless it is the ``last`` run
    (whose top-1 the summary gives)."""
    teacher = [p for p in raw["recipe"]["phases"] if p["role"] == "teacher"]
    students = [p for p in raw["recipe"]["phases"] if p["role"] == "student"]
    epochs = ", then ".join(f"{p['epochs']} epoch{'s' * (p['epochs'] != 1)} at {p['resolution']} px"
                            for p in students)
    taught = (f"taught by a {teacher[0]['model']} trained here first ({teacher[0]['epochs']} epochs at "
              f"{teacher[0]['resolution']} px): ") if teacher else ""
    if teacher and raw.get("teacher"):  # reused (train --teacher), not trained again
        taught = (f"taught by the {teacher[0]['model']} {f'run `{source}` trained' if source else 'of an earlier run'} "
                  f"(sha256 `{raw['teacher']['weights_sha256'][:12]}…`, reused): ")
    # A card from before the choice existed was trained in bfloat16 (the code's only mode then).
    precision = f", {raw.get('precision', 'bfloat16')}"
    after = "" if last else f"; top-1 {raw['val']['top1']:.2f}% after it"
    return f"{taught}{epochs} ({_minutes(raw['wall_s'])} on {_machine(raw)}{precision}{after})"


def summary(c: modelcard.ModelCard) -> str:
    """Markdown: what the model is, how it was made, and how well it does, from the card."""
    raw = c.raw
    val, data = raw["val"], raw["data"]
    runs = lineage(c)
    commit = ((raw.get("provenance") or {}).get("git") or {}).get("commit", "unknown")[:7]
    where = Path(data["data"]).name
    if len(runs) == 1:
        made = f", {_run_text(raw, last=True)} with the code at `{commit}`"
    else:
        made = (f" in {len(runs)} runs, each after the first continuing the weights of the one before: "
                + "; followed by ".join(f"`{r['recipe']['name']}`, "
                                        f"{_run_text(r, last=r is raw, source=teacher_source(runs, i))}"
                                        for i, r in enumerate(runs))
                + f". Altogether {_minutes(sum(r['wall_s'] for r in runs))} of training, the last run with "
                f"the code at `{commit}`")
    return (f"**{c.model}** with a {c.num_classes}-class head, trained from scratch on the "
            f"{data['train_images']:,} training photos of `{where}`{made}. "
            f"On all {val['images']:,} held-out val photos at {val['resolution']} px it scores "
            f"**top-1 {val['top1']:.2f}%** and top-5 {val['top5']:.2f}% "
            f"(weights sha256 `{raw['weights_sha256'][:12]}…`).")


def recipe_table(c: modelcard.ModelCard) -> pd.DataFrame:
    """One row per phase: model, epochs, resolution and every hyperparameter."""
    import pandas as pd

    rows = []
    for p, r in ((p, r) for r in lineage(c) for p in r["recipe"]["phases"]):
        run = r["recipe"]["name"]
        mix = (f"Mixup {p['mixup_alpha']:g} / CutMix {p['cutmix_alpha']:g}, p={p['mixup_prob']:g}"
               if p["mixup_prob"] > 0 else "none")
        # A teacher reused from an earlier run (train --teacher) trained no epoch in this one.
        epochs = "0 (reused)" if p["role"] == "teacher" and r.get("teacher") else p["epochs"]
        rows.append({"run": run, "phase": p["name"], "model": p["model"], "epochs": epochs, "px": p["resolution"],
                     "batch": p["batch_size"], "lr": f"{p['lr']:g}", "min lr": f"{p['min_lr']:g}",
                     "warm-up epochs": f"{p['warmup_epochs']:g}", "weight decay": f"{p['weight_decay']:g}",
                     "optimizer": p["opt"], "crop scale": "–".join(f"{s:g}" for s in p["crop_scale"]),
                     "mixing": mix, "label smoothing": f"{p['label_smoothing']:g}",
                     "drop path": f"{p['drop_path']:g}",
                     "loss": "½ labels + ½ teacher's hard labels" if p["distill"] else "labels"})
    return pd.DataFrame(rows)


def curve(c: modelcard.ModelCard) -> pd.DataFrame:
    """The per-epoch curve, numbered across phases and runs."""
    import pandas as pd

    df = pd.DataFrame([{**row, "run": r["recipe"]["name"]} for r in lineage(c) for row in r["curve"]])
    df["step"] = range(1, len(df) + 1)
    return df


def plot_curve(c: modelcard.ModelCard) -> Figure:
    """Val top-1 (at each phase's resolution) and training loss per epoch, one colour per phase."""
    import matplotlib.pyplot as plt

    df = curve(c)
    fig, (ax, loss_ax) = plt.subplots(1, 2, figsize=(10, 4.2))
    roles = {p["name"]: p["role"] for r in lineage(c) for p in r["recipe"]["phases"]}
    teachers, students = 0, 0
    for phase, g in df.groupby("phase", sort=False):
        if roles.get(phase) == "teacher":
            colour, teachers = _TEACHER_COLOURS[teachers % len(_TEACHER_COLOURS)], teachers + 1
        else:
            colour, students = _STUDENT_COLOURS[students % len(_STUDENT_COLOURS)], students + 1
        label = f"{phase} ({g['resolution'].iloc[0]} px)"
        ax.plot(g["step"], g["val_top1"], "o-", ms=3, color=colour, label=label)
        loss_ax.plot(g["step"], g["train_loss"], "o-", ms=3, color=colour, label=label)
    starts = df.groupby("run", sort=False)["step"].min().iloc[1:]
    for k, (run, step) in enumerate(starts.items(), 2):  # where a later run restarts from the weights before it
        for a in (ax, loss_ax):
            a.axvline(step - 0.5, color="black", lw=0.8, ls="--")
        # Upright along its line: runs a few epochs apart keep their labels apart.
        ax.annotate(f"run {k}: {run}", (step - 0.5, 0.02), xycoords=("data", "axes fraction"),
                    textcoords="offset points", xytext=(2, 0), rotation=90, va="bottom", fontsize=7)
    final = c.raw["val"]
    ax.axhline(final["top1"], color="black", lw=0.8, ls=":")
    ax.annotate(f"final: {final['top1']:.1f}% at {final['resolution']} px", (1, final["top1"]),
                textcoords="offset points", xytext=(2, 4), fontsize=8)
    ax.set(xlabel="epoch (all phases)", ylabel="val top-1 (%)", title="Val top-1 after each epoch")
    loss_ax.set(xlabel="epoch (all phases)", ylabel="training loss",
                title="Training loss (targets differ by phase)")
    ax.grid(alpha=0.3)
    loss_ax.grid(alpha=0.3)
    # Below both panels: inside one, the legend would hide a run's curve or label.
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=5, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def teacher_source(runs: list[dict[str, Any]], i: int) -> str | None:
    """The name of the earlier run whose teacher run ``i`` reused (``train --teacher``): the
    one whose card names that teacher's sha256 (``teacher_trained``), else, for cards from
    before it was recorded, the newest earlier run that trained a teacher; None when run
    ``i`` reused none, or no earlier run trained one."""
    reused = runs[i].get("teacher")
    if not reused:
        return None
    trained = [r for r in runs[:i] if any(p["role"] == "teacher" for p in r["recipe"]["phases"])
               and not r.get("teacher")]
    named = [r for r in trained if (r.get("teacher_trained") or {}).get("weights_sha256") == reused["weights_sha256"]]
    chosen = named or [r for r in trained if not r.get("teacher_trained")]
    return chosen[-1]["recipe"]["name"] if chosen else None


def retrain_command(c: modelcard.ModelCard, data: str = "../shared/imagenette") -> str:
    """The commands that train this model again (same recipes and seed), one run a line; a
    run that reused an earlier run's teacher takes it from that run (:func:`teacher_source`),
    or from the file its card names when no earlier run made it."""
    from ..harness.training import TEACHER_FILE

    runs, lines, previous = lineage(c), [], None
    for i, r in enumerate(runs):
        raw = r["recipe"]
        seed = f" --seed {raw['seed']}" if raw.get("seed") else ""
        init = f" --init runs/{previous}/{modelcard.WEIGHTS_FILE}" if previous else ""
        source = teacher_source(runs, i)
        teacher = (f" --teacher runs/{source}/{TEACHER_FILE}" if source
                   else f" --teacher {r['teacher']['file']}" if r.get("teacher") else "")
        name = raw["name"]
        lines.append(f"python -m tomato train --data {data} --out runs/{name} --recipe {name}{seed}{init}{teacher}")
        previous = raw["name"]
    return "\n".join(lines)

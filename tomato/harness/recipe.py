"""The training recipe of the model trained here: every hyperparameter in one place.

A ViT trained from scratch on ~9.5k photos learns slowly (it has none of a convnet's
locality prior), so the recipe follows the two remedies of the field for small data:

- **distillation from a convnet teacher** (DeiT: Touvron et al., "Training data-efficient
  image transformers & distillation through attention", ICML 2021): a ResNet is trained
  here first, then the distilled DeiT layout (class token + distillation token) learns
  the labels through its class head and the teacher's hard decisions through its
  distillation head ("hard-label distillation", DeiT section 5.2);
- **most epochs at a low resolution, a short fine-tune at full resolution** (FixRes:
  Touvron et al., "Fixing the train-test resolution discrepancy", NeurIPS 2019): at
  112 px a 16-pixel-patch ViT sees 49 tokens instead of 196 and trains about 4x faster;
  the position embeddings live at the 14 x 14 grid and are resampled on the fly
  (timm ``dynamic_img_size``), then one epoch at 224 px adapts the model to the
  resolution it is evaluated at.

Augmentation (random resized crops, flips, Mixup/CutMix with label smoothing) follows
DeiT, lighter because the schedule is short. The parts are timm's (optimizer factory,
cosine scheduler, Mixup, soft-target loss); only the batched crop is ours, because the
photos are decoded once into memory (see :mod:`tomato.harness.trainset`).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

__all__ = ["Phase", "Recipe", "RECIPES", "recipe", "load", "override", "to_toml"]


# The Python types each Phase field's annotation allows (a float field takes an int too).
_KINDS: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,),
                                       "tuple[float, float]": (tuple,)}
_KIND_WORDS = {(str,): "a string", (int,): "an integer", (int, float): "a number", (bool,): "true or false",
               (tuple,): "a pair of numbers"}


@dataclass(frozen=True)
class Phase:
    """One stage of training: a model, a resolution, a schedule.

    ``role`` is ``"teacher"`` (a convnet trained on the labels alone) or ``"student"``
    (the ViT; its weights carry over from one student phase to the next).
    ``distill`` weights the distillation head's loss against the teacher's hard labels.
    """

    name: str
    role: str
    model: str
    epochs: int
    resolution: int
    batch_size: int
    lr: float
    weight_decay: float = 0.05
    warmup_epochs: float = 0.0
    min_lr: float = 1e-6
    opt: str = "adamw"
    label_smoothing: float = 0.1
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mixup_prob: float = 0.0
    crop_scale: tuple[float, float] = (0.25, 1.0)
    drop_path: float = 0.0
    distill: bool = False

    def validate(self, patch: int = 16) -> None:
        """ValueError naming the phase and the setting that is out of range."""
        for f in fields(self):
            value, kinds = getattr(self, f.name), _KINDS[str(f.type)]
            if isinstance(value, bool) != (kinds == (bool,)) or not isinstance(value, kinds):
                raise ValueError(f"phase {self.name!r}: {f.name} must be {_KIND_WORDS[kinds]}, not {value!r}")
        if len(self.crop_scale) != 2 or not all(isinstance(v, (int, float)) for v in self.crop_scale) \
                or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(f"phase {self.name!r}: crop_scale must be two numbers 0 < lo <= hi <= 1, "
                             f"not {self.crop_scale!r}")
        if self.role not in ("teacher", "student"):
            raise ValueError(f"phase {self.name!r}: role must be 'teacher' or 'student', not {self.role!r}")
        for key in ("epochs", "resolution", "batch_size"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"phase {self.name!r}: {key} must be an integer >= 1, not {value!r}")
        if self.role == "student" and self.resolution % patch:
            raise ValueError(f"phase {self.name!r}: resolution {self.resolution} is not a multiple of the "
                             f"{patch}-pixel patch size; choose e.g. {max(patch, self.resolution // patch * patch)}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"phase {self.name!r}: lr must be a finite number > 0, not {self.lr!r}")


@dataclass(frozen=True)
class Recipe:
    """An ordered list of phases (teachers first) and the seed that fixes every draw.

    ``continues``: the name of the recipe whose finished model this one trains further
    (its student starts from those weights, given as ``train(..., init=...)``; a teacher,
    if the recipe has one, is trained from scratch first); empty for a recipe that starts
    from random init.
    """

    name: str
    phases: tuple[Phase, ...]
    seed: int = 0
    source: str = ""
    continues: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """ValueError for a recipe that cannot run: no student, a student needing a teacher first."""
        if not any(p.role == "student" for p in self.phases):
            raise ValueError(f"recipe {self.name!r} has no student phase")
        seen_teacher = False
        for p in self.phases:
            p.validate()
            seen_teacher |= p.role == "teacher"
            if p.distill and not seen_teacher:
                raise ValueError(f"phase {p.name!r} distils, but no teacher phase comes before it")
        students = {p.model for p in self.phases if p.role == "student"}
        if len(students) != 1:
            raise ValueError(f"recipe {self.name!r}: all student phases must train one model, got {sorted(students)}")

    @property
    def student(self) -> str:
        """The timm name of the model this recipe produces."""
        return next(p.model for p in self.phases if p.role == "student")

    @property
    def final_resolution(self) -> int:
        return [p for p in self.phases if p.role == "student"][-1].resolution

    def with_seed(self, seed: int) -> Recipe:
        return replace(self, seed=seed)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the run's config and the model card."""
        return asdict(self)


_CITED = ("DeiT (Touvron et al., ICML 2021): distilled layout, hard-label distillation from a convnet "
          "teacher, AdamW, cosine schedule, Mixup/CutMix, label smoothing; FixRes (Touvron et al., "
          "NeurIPS 2019): low-resolution epochs, then a short fine-tune at the test resolution")

# The CPU recipe: sized for about 90 minutes of a 2-core machine (measured there with
# bfloat16 autocast: ResNet-18 trains at ~104 img/s at 112 px, DeiT-Ti at ~84, the
# teacher's inference at ~225; DeiT-Ti at 224 px at ~22).
IMAGENETTE_CPU = Recipe(
    name="imagenette-cpu",
    source=_CITED,
    phases=(
        Phase("teacher", "teacher", "resnet18", epochs=8, resolution=112, batch_size=64, lr=2e-3,
              weight_decay=0.01, warmup_epochs=0.5, crop_scale=(0.35, 1.0)),
        Phase("low-res", "student", "deit_tiny_distilled_patch16_224", epochs=20, resolution=112,
              batch_size=64, lr=7e-4, warmup_epochs=2, mixup_alpha=0.8, cutmix_alpha=1.0, mixup_prob=0.5,
              drop_path=0.05, distill=True),
        Phase("fine-tune", "student", "deit_tiny_distilled_patch16_224", epochs=1, resolution=224,
              batch_size=64, lr=1e-4, min_lr=1e-5, weight_decay=0.05, crop_scale=(0.6, 1.0),
              label_smoothing=0.1),
    ),
)

# The same recipe, longer (about 105 minutes of the same machine): 28 low-resolution epochs
# instead of 20, because the 20-epoch student's val top-1 was still rising when its cosine
# schedule ran out (60.4% at 112 px after epoch 20), and two epochs at 224 px instead of one
# (the single fine-tune epoch moved top-1 from 60.4% at 112 px to 66.7% at 224 px).
IMAGENETTE_CPU_LONG = replace(
    IMAGENETTE_CPU,
    name="imagenette-cpu-long",
    phases=(IMAGENETTE_CPU.phases[0],
            replace(IMAGENETTE_CPU.phases[1], epochs=28),
            replace(IMAGENETTE_CPU.phases[2], epochs=2)),
)

# A second cycle on the finished imagenette-cpu model (SGDR's warm restart: Loshchilov &
# Hutter, ICLR 2017): its 112 px top-1 was still rising when the first cosine ran out, so
# the student restarts from those weights with a fresh, lower cosine for 15 more epochs
# at 112 px, then one at 224 px. No teacher: a second ResNet-18 run would cost a fifth
# of the budget for a teacher (76.7%) barely ahead of the student it would teach, so
# both heads learn the labels. Sized for about 90 minutes of a 2-core AVX2-only CPU,
# where training runs in float32 (measured there: DeiT-Ti trains at ~44 img/s at 112 px
# and ~9 at 224 px; bfloat16 has no hardware path on that CPU).
IMAGENETTE_CPU_MORE = Recipe(
    name="imagenette-cpu-more",
    continues="imagenette-cpu",
    source=_CITED + "; SGDR (Loshchilov & Hutter, ICLR 2017): a warm restart of the cosine schedule",
    phases=(
        replace(IMAGENETTE_CPU.phases[1], name="low-res-2", epochs=15, lr=4e-4, warmup_epochs=1, distill=False),
        replace(IMAGENETTE_CPU.phases[2], name="fine-tune-2", epochs=1),
    ),
)

# A third cycle, with a much stronger teacher (issue 37: the book's model at >= 80%).
# DeiT's gains come from its teacher, and the first teacher (ResNet-18, 8 epochs, 76.7%)
# was barely ahead of its student. A ResNet-18 learns Imagenette to the high 80s when it
# trains longer, so this recipe first trains one for 30 epochs at 112 px, on the very crop
# distribution it will label for the student (no Mixup: the student's mixed crops are
# labelled by its argmax), then restarts the finished imagenette-cpu-more student (70.47%)
# with hard-label distillation for 18 epochs at 112 px and one at 224 px. Sized for about
# 120 minutes of a 2-core CPU with AMX bfloat16 (measured there: ResNet-18 trains at
# ~108 img/s at 112 px, DeiT-Ti at ~66, the teacher labels at ~576; DeiT-Ti at 224 px ~27).
IMAGENETTE_CPU_TEACHER = Recipe(
    name="imagenette-cpu-teacher",
    continues="imagenette-cpu-more",
    source=_CITED + "; SGDR (Loshchilov & Hutter, ICLR 2017): a warm restart of the cosine schedule",
    phases=(
        Phase("teacher-2", "teacher", "resnet18", epochs=30, resolution=112, batch_size=64, lr=2e-3,
              weight_decay=0.05, warmup_epochs=1, crop_scale=(0.25, 1.0)),
        replace(IMAGENETTE_CPU.phases[1], name="low-res-3", epochs=18, lr=4e-4, warmup_epochs=1),
        replace(IMAGENETTE_CPU.phases[2], name="fine-tune-3", epochs=1),
    ),
)

# A fourth cycle: the same teacher (84.4% at 112 px, reused with --teacher: it is fixed, and
# retraining it would cost 40 minutes), the finished imagenette-cpu-teacher student (74.11%)
# restarted for 30 more epochs at 112 px, where its top-1 was still rising (67.52 to 67.95%
# over its last five epochs), then one at 224 px. Sized for about 75 minutes of the same CPU.
IMAGENETTE_CPU_TEACHER_MORE = Recipe(
    name="imagenette-cpu-teacher-more",
    continues="imagenette-cpu-teacher",
    source=IMAGENETTE_CPU_TEACHER.source,
    phases=(
        IMAGENETTE_CPU_TEACHER.phases[0],
        replace(IMAGENETTE_CPU_TEACHER.phases[1], name="low-res-4", epochs=30, lr=3e-4),
        replace(IMAGENETTE_CPU_TEACHER.phases[2], name="fine-tune-4"),
    ),
)

# A fifth cycle, at a middle resolution. Each run so far ended with a large jump at its one
# 224 px epoch (67.95 -> 74.11%, 70.90 -> 75.75%): a model that trains on 7 x 7 token grids
# sees a 14 x 14 grid only at the end. At 160 px (10 x 10 tokens, about twice the cost of
# 112 px) the student trains nearer the grid it is tested on, and the teacher, trained at
# 112 px, labels crops at about 1.4x its training size (FixRes: a convnet trained on random
# resized crops tests best somewhat above its training size); then two epochs at 224 px.
# The finished imagenette-cpu-teacher-more student (75.75%) restarts with the same reused
# teacher.
IMAGENETTE_CPU_TEACHER_160 = Recipe(
    name="imagenette-cpu-teacher-160",
    continues="imagenette-cpu-teacher-more",
    source=IMAGENETTE_CPU_TEACHER.source,
    phases=(
        IMAGENETTE_CPU_TEACHER.phases[0],
        replace(IMAGENETTE_CPU_TEACHER.phases[1], name="mid-res-5", epochs=16, resolution=160, lr=2e-4),
        replace(IMAGENETTE_CPU_TEACHER.phases[2], name="fine-tune-5", epochs=2),
    ),
)

# A few seconds on any machine: the tests' configuration (tiny photos, a few steps).
TINY = Recipe(
    name="tiny",
    source="test configuration",
    phases=(
        Phase("teacher", "teacher", "resnet10t", epochs=1, resolution=32, batch_size=4, lr=1e-3),
        Phase("low-res", "student", "deit_tiny_distilled_patch16_224", epochs=2, resolution=32,
              batch_size=4, lr=1e-3, mixup_alpha=0.8, cutmix_alpha=1.0, mixup_prob=1.0, drop_path=0.1,
              distill=True),
        Phase("fine-tune", "student", "deit_tiny_distilled_patch16_224", epochs=1, resolution=48,
              batch_size=4, lr=1e-4),
    ),
)

# The tests' continuation of TINY: one more epoch of each student phase, from its weights.
TINY_MORE = Recipe(name="tiny-more", continues="tiny", source="test configuration",
                   phases=tuple(replace(p, epochs=1, distill=False) for p in TINY.phases[1:]))

RECIPES: dict[str, Recipe] = {r.name: r for r in (IMAGENETTE_CPU, IMAGENETTE_CPU_LONG, IMAGENETTE_CPU_MORE,
                                                  IMAGENETTE_CPU_TEACHER, IMAGENETTE_CPU_TEACHER_MORE,
                                                  IMAGENETTE_CPU_TEACHER_160, TINY,
                                                  TINY_MORE)}


def recipe(name: str) -> Recipe:
    """The recipe called ``name``; ValueError listing the known ones."""
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}") from None


# --------------------------------------------------------------------------- recipe files
def load(spec: str | Path) -> Recipe:
    """A built-in recipe by name, or one read from a ``.toml``/``.yaml``/``.yml`` file.

    The file holds the fields of :class:`Recipe` at the top level and one table per phase
    (``[[phases]]`` in TOML, a ``phases:`` list in YAML) with the fields of :class:`Phase`;
    ``python -m tomato train --recipe NAME --show-recipe`` prints a built-in one as a
    starting point. Data only: YAML is read with ``safe_load``, which builds no objects.
    ValueError (one line) for a missing file, a syntax error, an unknown or missing field,
    or a value out of range."""
    path = Path(str(spec)).expanduser()
    if path.suffix.lower() not in (".toml", ".yaml", ".yml"):
        if path.exists() or "/" in str(spec) or (path.suffix and str(spec) not in RECIPES):
            raise ValueError(f"--recipe {spec}: a recipe file must end in .toml, .yaml or .yml")
        return recipe(str(spec))
    if not path.is_file():
        raise ValueError(f"--recipe {spec}: file not found")
    parse = _toml_reader(spec) if path.suffix.lower() == ".toml" else _yaml_reader()
    try:
        raw = parse(path.read_text(encoding="utf-8"))
    except Exception as e:  # the parsers' own errors name the line
        raise ValueError(f"--recipe {spec}: not a readable recipe file ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else e})") from None
    made = _from_data(raw, where=f"--recipe {spec}")
    made.validate()
    return made


def _toml_reader(spec: str | Path) -> Any:
    """``tomllib.loads`` (Python 3.11+), else the ``tomli`` package it came from (older
    Pythons, e.g. a Jetson's 3.8); ValueError saying how to read the file without either."""
    import importlib

    for name in ("tomllib", "tomli"):  # the standard library's from 3.11; the package before
        try:
            return importlib.import_module(name).loads
        except ImportError:
            continue
    raise ValueError(f"--recipe {spec}: reading TOML needs Python 3.11+ or 'pip install tomli'; "
                     "or write the recipe as YAML")


def _yaml_reader() -> Any:
    import yaml

    return yaml.safe_load  # data only: builds no objects


def _from_data(raw: Any, where: str) -> Recipe:
    """A :class:`Recipe` from plain data, every key checked against the dataclasses' fields."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: the file must hold a table of recipe fields, not {type(raw).__name__}")
    phases = raw.get("phases")
    if not isinstance(phases, list) or not phases:
        raise ValueError(f"{where}: give at least one phase ([[phases]] in TOML, a 'phases:' list in YAML)")
    made = []
    for i, p in enumerate(phases):
        if not isinstance(p, dict):
            raise ValueError(f"{where}: phase {i + 1} must be a table of Phase fields")
        p = dict(p)
        if "crop_scale" in p:
            p["crop_scale"] = tuple(p["crop_scale"])
        made.append(_build_dataclass(Phase, p, f"{where}: phase {p.get('name', i + 1)!r}"))
    top = {k: v for k, v in raw.items() if k != "phases"}
    top.setdefault("name", Path(where.split(" ", 1)[-1]).stem)
    return _build_dataclass(Recipe, {**top, "phases": tuple(made)}, where)


def _build_dataclass(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r}; known: {', '.join(sorted(known))}")
    try:
        return cls(**values)
    except TypeError as e:  # a required field is missing
        raise ValueError(f"{where}: {e}".replace("__init__() ", "")) from None


def override(base: Recipe, *, phase: str | None = None, epochs: int | None = None, lr: float | None = None,
             batch_size: int | None = None, model: str | None = None) -> Recipe:
    """``base`` with the command line's overrides, validated.

    ``epochs``, ``lr`` and ``batch_size`` change one phase: ``phase`` by name, or else the
    recipe's first student phase (its long one); ``model`` replaces the student model in
    every student phase (they train one model). ValueError (one line) naming the flag."""
    names = [p.name for p in base.phases]
    if phase is not None and phase not in names:
        raise ValueError(f"--phase {phase}: recipe {base.name!r} has the phases {', '.join(names)}")
    target = phase or next(p.name for p in base.phases if p.role == "student")
    changes = {"epochs": epochs, "lr": lr, "batch_size": batch_size}
    phases = []
    for p in base.phases:
        if p.name == target:
            p = replace(p, **{k: v for k, v in changes.items() if v is not None})
        if model is not None and p.role == "student":
            p = replace(p, model=model)
        phases.append(p)
    made = replace(base, phases=tuple(phases))
    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in {**changes, "model": model}.items() if v is not None)
    try:
        made.validate()
    except ValueError as e:
        raise ValueError(f"{flags}: {e}" if flags else str(e)) from None
    return made


def to_toml(r: Recipe) -> str:
    """``r`` as a TOML recipe file that :func:`load` reads back to an equal recipe."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (tuple, list)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(str(v))  # a JSON string is a TOML basic string (same escapes)

    if r.extra:
        raise ValueError(f"recipe {r.name!r}: its 'extra' table has no TOML form here")
    lines = [f"# recipe {r.name!r} (tomato/harness/recipe.py); edit and pass with --recipe FILE.toml"]
    lines += [f"{k} = {value(getattr(r, k))}" for k in ("name", "seed", "continues", "source")]
    for p in r.phases:
        lines += ["", "[[phases]]"] + [f"{f.name} = {value(getattr(p, f.name))}" for f in fields(Phase)]
    return "\n".join(lines) + "\n"

"""What every notebook parameter means and allows: one :class:`Rule` per name.

The notebooks' ``parameters`` cells declare each parameter with a type annotation and a
one-line comment (``sim: float = 1e-7  # ...``), which ``papermill --help-notebook``
shows; :data:`RULES` holds the same type and line plus the allowed range, and
:func:`check` turns any value into either the value to use or one ``error:`` line that
names the parameter, the value given and what is allowed. Ranges are ranges: any value
inside one works (no lookup keyed by the paper's values). Limits that depend on the data
or the model (an image index, a token of the patch grid) are checked by
:mod:`tomato.book.notebook` once those are loaded.
"""
from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")


class Invalid(ValueError):
    """A parameter value outside what its rule allows; the message says what is allowed."""


def _number(value: Any) -> float:
    """A real number from a number or its text (YAML reads ``1e-7`` as text)."""
    if isinstance(value, bool):
        raise Invalid("a number")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise Invalid("a number")


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise Invalid("an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    raise Invalid("an integer")


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise Invalid("True or False")


def _text(value: Any) -> str:
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise Invalid("a non-empty string")


def _optional_text(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        return None
    return _text(value)


def _trained(value: Any) -> str:
    """A model trained here: a folder under ``data/weights/`` whose card reads whole."""
    from ..harness import modelcard, models

    name = _text(value)
    folder = Path(name) if Path(name).is_dir() else models.WEIGHTS_DIR / name
    if not (folder / modelcard.CARD_FILE).is_file():
        names = ", ".join(sorted(p.parent.name for p in models.WEIGHTS_DIR.glob(f"*/{modelcard.CARD_FILE}")))
        raise Invalid(f"a model under data/weights/ with its card ({names or 'none is there'})")
    try:
        modelcard.read_card(folder)
    except ValueError as e:
        raise Invalid(f"a model whose card reads whole; {e}") from None
    return name


def _tomato(name: str) -> Callable[[Any], float]:
    """A ToMato setting, checked by the core's one validator in the core's words."""
    from ..core import pipeline

    def convert(value: Any) -> float:
        try:
            return pipeline.check_setting(name, _number(value))
        except ValueError:
            raise Invalid(pipeline.ALLOWED[name].replace(" or None", "")) from None
    return convert


def _at_least(lo: int, what: str) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        try:
            v = _integer(value)
        except Invalid:
            raise Invalid(what) from None
        if v < lo:
            raise Invalid(what)
        return v

    return convert


def _optional_seconds(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
        return None
    try:
        v = _number(value)
    except Invalid:
        raise Invalid("None or a number of seconds > 0") from None
    if not v > 0 or math.isinf(v):
        raise Invalid("None or a number of seconds > 0")
    return v


def _optional_count(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
        return None
    return _at_least(1, "None or an integer >= 1")(value)


def _device(value: Any) -> str:
    text = _text(value).lower()
    if not _DEVICE.match(text):
        raise Invalid('"cpu", "cuda", "cuda:N" or "mps"')
    if text.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise Invalid('"cpu" here: this machine has no CUDA device')
    return text


def _pair(value: Any) -> tuple[int, int]:
    what = "a (row, col) pair of integers >= 0, e.g. (7, 7)"
    if isinstance(value, str):  # papermill -p token "7,7"
        value = [p for p in re.split(r"[\s,()\[\]]+", value) if p]
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise Invalid(what)
    try:
        row, col = (_integer(v) for v in value)
    except Invalid:
        raise Invalid(what) from None
    if row < 0 or col < 0:
        raise Invalid(what)
    return row, col


def _int_list(value: Any) -> list[int]:
    what = "a list of integers >= 1, e.g. [1, 4, 8]"
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise Invalid(what)
    try:
        out = [_integer(v) for v in value]
    except Invalid:
        raise Invalid(what) from None
    if min(out) < 1:
        raise Invalid(what)
    return out


@dataclass(frozen=True)
class Rule:
    """type: as the parameters cell annotates it (what ``--help-notebook`` shows);
    help: the one-line description; convert: value -> the value to use, raising
    :class:`Invalid` with what is allowed."""

    type: str
    help: str
    convert: Callable[[Any], Any]


#: Every parameter a notebook of this book may declare.
RULES: dict[str, Rule] = {
    "model": Rule("str", "timm model name (a DeiT/ViT with a patch grid)", _text),
    "data": Rule("str", '"smoke" (scikit-image photos) or an ImageNet-style folder', _text),
    "checkpoint": Rule("Optional[str]", "weights file, or a model under data/weights/; None: timm's", _optional_text),
    "random_weights": Rule("bool", "no weights found: seeded random init (not accuracy)", _boolean),
    "device": Rule("str", '"cpu", "cuda" or "cuda:N"', _device),
    "trained_model": Rule("str", "the model trained here: a folder under data/weights/", _trained),
    "results": Rule("str", "folder of recorded runs (relative to the repository)", _text),
    "runs": Rule("str", "this page's own runs, resumable (the build: _build/runs)", _text),
    "progress": Rule("bool", "show progress bars in long cells", _boolean),
    "image_index": Rule("int", "which photo is drawn (0 is the first of data)", _at_least(0, "an integer >= 0")),
    "token": Rule("Tuple[int, int]", "(row, col) of the token whose distribution is drawn", _pair),
    "sim": Rule("float", "ToMato's threshold, 0 or more; lower merges more", _tomato("sim")),
    "keep_ratio": Rule("float", "token budget: share of patch tokens kept, in (0, 1]", _tomato("keep_ratio")),
    "tome_r": Rule("int", "ToMe's tokens merged per block (the paper's: 2)", _at_least(0, "an integer >= 0")),
    "tome_r_extra": Rule("int", "a second ToMe r drawn beside the paper's (0: none)", _at_least(0, "an integer >= 0")),
    "max_images": Rule("int", "use at most this many images of data", _at_least(1, "an integer >= 1")),
    "val": Rule("str", "photos for Figure 2 (absent: the shipped ones)", _text),
    "batch_size": Rule("int", "evaluation batch size (results do not depend on it)", _at_least(1, "an integer >= 1")),
    "time_runs": Rule("int", "timed rounds per variant, at least (robust protocol)", _at_least(1, "an integer >= 1")),
    "warmup": Rule("int", "untimed rounds per variant before the timed ones", _at_least(0, "an integer >= 0")),
    "budget_s": Rule("Optional[float]", "time rounds until this many seconds (None: no budget)", _optional_seconds),
    "timing_images": Rule("int", "photos the timed calls rotate through", _at_least(1, "an integer >= 1")),
    "paper_image": Rule("int", "the one picture: its index in data (0 is the first)", _at_least(0, "an integer >= 0")),
    "paper_forwards": Rule("int", "forwards per variant at batch 1, no warm-up (paper: 11)",
                            _at_least(1, "an integer >= 1")),
    "paper_threads": Rule("Optional[int]", "torch CPU threads (the Nano has 4); None: torch's default",
                           _optional_count),
    "bench_batch_sizes": Rule("List[int]", "batch sizes of the live merge-step benchmark", _int_list),
    "bench_runs": Rule("int", "timed rounds of the live merge-step benchmark", _at_least(1, "an integer >= 1")),
    "bench_warmup": Rule("int", "untimed rounds of the live benchmark before the timed ones",
                          _at_least(0, "an integer >= 0")),
    "bench_threads": Rule("Optional[int]", "CPU threads of the live benchmark; None: torch's default", _optional_count),
}

_PLAIN = {"float": _number, "int": _integer, "bool": _boolean, "str": _text}


def check(name: str, value: Any, annotation: Any = None) -> Any:
    """The value to use for parameter ``name``; raises :class:`Invalid` whose message is
    one ``error:`` line (parameter, value, what is allowed). A name without a rule is
    checked against its annotation (``float``, ``int``, ``bool`` or ``str``) only."""
    rule = RULES.get(name)
    convert = rule.convert if rule else _PLAIN.get(getattr(annotation, "__name__", str(annotation)))
    if convert is None:
        return value
    try:
        return convert(value)
    except Invalid as e:
        raise Invalid(f"error: parameter {name} = {value!r}: expected {e}") from None


# the parameters cells ----------------------------------------------------------------------------
#: The widest a line of a notebook's code may be (what JupyterLab shows without scrolling).
LINE = 100
_DECLARED = re.compile(r"^(?P<name>\w+)\s*:\s*\"?[\w\[\], ]+\"?\s*=\s*(?P<value>.*?)\s*(#.*)?$")


def declared(source: str) -> list[tuple[str, str]]:
    """(name, value as written) of each declaration in a parameters cell, in order."""
    found = (_DECLARED.match(line) for line in source.splitlines())
    return [(m["name"], m["value"]) for m in found if m]


def cell(values: list[tuple[str, str]]) -> str:
    """The source of a parameters cell declaring ``values`` ((name, value as Python text),
    in order): ``name: type = value  # help``, type and help from :data:`RULES`, the
    comments aligned. ValueError for a name without a rule or a line over :data:`LINE`."""
    decls = []
    for name, value in values:
        if name not in RULES:
            raise ValueError(f"parameter {name!r} has no rule in tomato.book.parameters.RULES")
        kind = RULES[name].type  # quoted unless a builtin: the cell does not import typing
        shown = kind if kind in _PLAIN else f'"{kind}"'
        decls.append(f"{name}: {shown} = {value}")
    width = max(map(len, decls)) + 2
    lines = [f"{d:<{width}}# {RULES[name].help}" for d, (name, _) in zip(decls, values)]
    long = [line for line in lines if len(line) > LINE]
    if long:
        raise ValueError(f"parameter line over {LINE} characters: {long[0]!r}; shorten its rule's help")
    return "\n".join(lines)


def _rewrite(paths: list[str], write: bool) -> int:
    """Make (``write``) or check each notebook's parameters cell from :data:`RULES`."""
    import json
    from pathlib import Path

    stale = []
    for path in map(Path, paths):
        nb = json.loads(path.read_text(encoding="utf-8"))
        changed = False
        for c in nb["cells"]:
            if "parameters" not in c.get("metadata", {}).get("tags", []):
                continue
            want = cell(declared("".join(c["source"])))
            if "".join(c["source"]) != want:
                changed = True
                c["source"] = want.splitlines(keepends=True)
        if changed:
            stale.append(str(path))
        if write and changed:
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if stale and not write:
        sys.stderr.write(f"error: parameters cells not made from RULES: {', '.join(stale)} "
                         "(python -m tomato.book.parameters --write notebooks/*.ipynb)\n")
    return 1 if stale and not write else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(_rewrite([a for a in args if a != "--write"], "--write" in args))

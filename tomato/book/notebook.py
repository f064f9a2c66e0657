"""The one-call setup every notebook of the book starts with.

::

    from tomato.book import notebook
    page = notebook.setup(globals(), images=True)

:func:`setup` reads the parameters the notebook declared (its ``parameters`` cell, with
papermill's injected values on top), checks each against :data:`tomato.book.parameters.RULES`
and reports unknown names; every problem is one ``error:`` line and the notebook stops
there (:class:`ParameterError` shows those lines and no traceback). It then loads the
model and the data, shows the weights banner once (the loader's own warning is not
repeated as log text) and the parameters in force as a small table, and returns a
:class:`Page` holding what the rest of the notebook uses. A real run never falls back to
random weights unless ``random_weights`` is True: without weights it stops with one line
saying how to get them.
"""
from __future__ import annotations

import ast
import contextlib
import difflib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, MutableMapping

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..harness import data as datasets
from ..harness import models
from ..harness.data import Sample
from ..harness.models import WeightsInfo
from . import parameters
from .tables import weights_banner
from .pictures import model_title, to_display
from . import runs
from .runs import RecordedRun, VariantRun, repo_path


class ParameterError(Exception):
    """Stops a notebook: one ``error:`` line per problem, shown without a traceback."""

    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = list(lines)

    def _render_traceback_(self) -> list[str]:  # IPython shows these lines instead of a traceback
        return self.lines


@dataclass
class Page:
    """What a notebook works with after :func:`setup`.

    params: the parameters in force (checked, in declaration order); model: the timm
    model in eval mode on ``params["device"]``; weights: where its weights came from;
    samples: the images of ``data`` (at most ``max_images`` when declared); who: a short
    model name for figure titles (``"random-init DeiT-B"``). With ``images=True``:
    images (B, 3, H, W) model inputs, photos (H, W, 3) in [0, 1] for display, names
    (file stems), and skipped: (path, reason) of files that could not be read. said: the
    warnings this page has shown in full (:func:`tomato.book.tables.first`).
    """

    params: dict[str, Any]
    model: nn.Module
    weights: WeightsInfo
    samples: list[Sample]
    who: str
    images: torch.Tensor | None = None
    photos: list[np.ndarray] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    said: set[str] = field(default_factory=set)  # warnings shown in full on this page (tables.first)

    @property
    def progress(self) -> bool:
        """Whether long cells show progress bars (the ``progress`` parameter, default on)."""
        return bool(self.params.get("progress", True))

    def path(self, name: str) -> Path:
        """A folder parameter (``results``, ``runs``) resolved against the repository root."""
        return repo_path(self.params[name])

    def run_folder(self, kind: str, data: Any = None) -> Path:
        """This page's own resumable folder for a ``kind`` of run, named by the model, the
        data (default: the ``data`` parameter) and the weights: :func:`runs.run_folder`."""
        data = self.params.get("data") if data is None else data
        return runs.run_folder(self.params["runs"], kind, self.weights, data)

    def recorded_runs(self, root: Path | str | None = None) -> list[RecordedRun]:
        """The evaluation runs under ``root`` (default: the ``results`` parameter)."""
        return runs.recorded_runs(self.path("results") if root is None else root)

    def records(self, of: str) -> list[tuple[Path, dict[str, Any]]]:
        """Every JSON record of kind ``of`` under the ``results`` folder, as (path, record)."""
        return runs.records(of, self.path("results"))

    def record(self, of: str, path: Path | str) -> dict[str, Any] | None:
        """The record of kind ``of`` at ``path``, or None."""
        return runs.record(of, path)

    def recorded_variant(self, spec: str) -> VariantRun | None:
        """The recorded evaluation of ``spec`` under ``results`` with the most photos,
        preferring runs of this page's own weights (:func:`runs.recorded_variant`)."""
        return runs.recorded_variant(self.path("results"), spec, self.weights.sha256)

    @staticmethod
    def shown(path: Path | str) -> str:
        """``path`` as a page prints it (relative to the repository when inside it)."""
        return runs.shown(path)


class _OnceInBanner(logging.Filter):
    """Drops the log records that only repeat the weights banner."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "NOT accuracy" not in record.getMessage()


_ONCE_IN_BANNER = _OnceInBanner()


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Silence logger ``name`` below ERROR for a moment (the page says it in the banner)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def injected_names(namespace: MutableMapping[str, Any]) -> list[str]:
    """Names papermill injected (its cell starts ``# Parameters``), from the kernel's
    input history ``In``; empty when the notebook runs without papermill."""
    names: list[str] = []
    for source in namespace.get("In", []) or []:
        if not isinstance(source, str) or not source.lstrip().startswith("# Parameters"):
            continue
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Assign):
                names += [t.id for t in node.targets if isinstance(t, ast.Name)]
    return list(dict.fromkeys(names))


def check_parameters(namespace: MutableMapping[str, Any]) -> dict[str, Any]:
    """The declared parameters (annotated names of the ``parameters`` cell), checked.

    Returns name -> value to use; raises :class:`ParameterError` with one line per bad
    value and per unknown injected name."""
    declared = dict(namespace.get("__annotations__") or {})
    if not declared:
        raise ParameterError(["error: this notebook declares no parameters: annotate them in its "
                              "parameters cell (e.g. sim: float = 1e-7  # threshold)"])
    errors, values = [], {}
    for name in injected_names(namespace):
        if name not in declared:
            close = difflib.get_close_matches(name, list(declared), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            errors.append(f"error: unknown parameter {name!r}{hint}; this notebook takes: {', '.join(declared)}")
    for name, annotation in declared.items():
        try:
            values[name] = parameters.check(name, namespace.get(name), annotation)
        except parameters.Invalid as e:
            errors.append(str(e))
    if errors:
        raise ParameterError(errors)
    return values


def _load_model(p: dict[str, Any]) -> tuple[nn.Module, WeightsInfo]:
    name = p.get("model", models.DEFAULT_MODEL)
    if p.get("checkpoint") and name == models.DEFAULT_MODEL:
        name = None  # a model trained here names its own architecture in its card
    try:
        with _quiet(models.__name__):
            return models.load(name, checkpoint=p.get("checkpoint"), random_fallback=p.get("random_weights", False),
                               device=p.get("device", "cpu"))
    except FileNotFoundError:
        raise ParameterError([f"error: parameter checkpoint = {p.get('checkpoint')!r}: no such file"]) from None
    except ValueError as e:
        raise ParameterError([f"error: parameter model = {name!r}: {str(e).splitlines()[0]}"]) from None
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        found = re.match(r"Could not get pretrained weights for .*? \((.*)\)\. To use real weights", first)
        why = found.group(1) if found else first.rstrip(".")
        raise ParameterError([
            f"error: no pretrained weights for {name!r} here ({why}); in JupyterLab set checkpoint = "
            "\"/path/to/weights.pth\" (or random_weights = True: seeded random-init weights, NOT accuracy) in the "
            "parameters cell and run all cells again; with papermill pass -p checkpoint /path/to/weights.pth "
            "(or -p random_weights True)"]) from None


def _load_samples(p: dict[str, Any]) -> list[Sample]:
    spec = p.get("data", "smoke")
    try:
        samples = datasets.resolve_data(spec if spec == "smoke" else repo_path(spec))
    except (OSError, ValueError) as e:
        raise ParameterError([f"error: parameter data = {spec!r}: {str(e).splitlines()[0]}"]) from None
    return samples[: p["max_images"]] if "max_images" in p else samples


def read_photos(samples: list[Sample], model: nn.Module, device: Any = "cpu"
                ) -> tuple[torch.Tensor | None, list[np.ndarray], list[Sample], list[tuple[str, str]]]:
    """``samples`` read as ``model`` sees them: inputs (B, 3, H, W) on ``device`` (None if
    none could be read), display arrays (H, W, 3) in [0, 1], the samples read, and
    (path, reason) of those that could not be (truncated, not an image)."""
    transform = datasets.transform_for(model)
    tensors, kept, skipped = [], [], []
    for s in samples:
        try:
            tensors.append(transform(datasets.load_image(s.path)))
            kept.append(s)
        except (OSError, ValueError, Image.DecompressionBombError) as e:  # truncated, not an image, too large
            skipped.append((str(s.path), f"{type(e).__name__}: {e}"))
    if not tensors:
        return None, [], [], skipped
    images = torch.stack(tensors).to(device)
    return images, [to_display(im, model) for im in images], kept, skipped


def _read_images(page: Page) -> None:
    """Fill ``page.images/photos/names`` from its samples, skipping unreadable files."""
    images, photos, kept, skipped = read_photos(page.samples, page.model, page.params.get("device", "cpu"))
    page.skipped += skipped
    if images is None:
        raise ParameterError([f"error: parameter data = {page.params.get('data')!r}: none of its "
                              f"{len(page.samples)} images could be read"])
    page.samples, page.images, page.photos = kept, images, photos
    page.names = [s.path.stem for s in kept]


def _running(page: Page) -> str:
    """The model the page runs: its weights' architecture (a card's, for a model trained here)."""
    weights = getattr(page, "weights", None)
    return str(getattr(weights, "model", None) or page.params.get("model"))


def _check_against_data(page: Page) -> None:
    """Limits known only now: an image index within the images, a token on the grid."""
    p, errors = page.params, []
    n = len(page.samples)
    for name in ("image_index", "paper_image"):
        if name in p and not p[name] < n:
            errors.append(f"error: parameter {name} = {p[name]!r}: expected an integer in "
                          f"0..{n - 1} (data = {p.get('data')!r} has {n} usable images)")
    grid = tuple(getattr(getattr(page.model, "patch_embed", None), "grid_size", ()) or ())
    if "token" in p and len(grid) == 2 and not (p["token"][0] < grid[0] and p["token"][1] < grid[1]):
        errors.append(f"error: parameter token = {p['token']!r}: expected (row, col) with row in 0..{grid[0] - 1} "
                      f"and col in 0..{grid[1] - 1} (the {grid[0]}x{grid[1]} patch grid of {_running(page)})")
    if errors:
        raise ParameterError(errors)


def parameter_table(params: dict[str, Any], weights: WeightsInfo | None = None) -> Any:
    """The parameters in force as a small table: parameter, value, meaning. With the loaded
    ``weights``, a ``model`` the checkpoint's card overrode shows the model that runs, and
    ``random_weights`` is left out where trained weights were found (it did nothing)."""
    import pandas as pd

    idle = {"random_weights"} if weights is not None and weights.pretrained else set()
    rows = [{"parameter": k, "value": repr(v) if isinstance(v, str) or v is None else str(v),
             "meaning": parameters.RULES[k].help if k in parameters.RULES else ""}
            for k, v in params.items() if k not in idle]
    for row in rows:
        if row["parameter"] == "model" and weights is not None and weights.model != params["model"]:
            row["value"] = repr(weights.model)
            row["meaning"] = "the model the checkpoint's card names (a checkpoint decides the model)"
    return pd.DataFrame(rows, columns=["parameter", "value", "meaning"])


def setup(namespace: MutableMapping[str, Any], *, images: bool = False, show: bool = True) -> Page:
    """Check the notebook's parameters, load model and data, show banner and parameters.

    namespace: the notebook's ``globals()`` (its checked parameters are written back,
    so ``sim`` is a float even when given as text); images: also read the images into
    model inputs and display arrays; show: display the banner and the parameter table.
    Raises :class:`ParameterError` (one line per problem) on bad input.
    """
    params = check_parameters(namespace)
    namespace.update(params)
    model, weights = _load_model(params)
    # Evaluations warn that random-init numbers are not accuracy; the banner says it once.
    evaluate_log = logging.getLogger("tomato.harness.evaluate")
    if _ONCE_IN_BANNER not in evaluate_log.filters:
        evaluate_log.addFilter(_ONCE_IN_BANNER)
    try:
        with _quiet(datasets.__name__):  # pictures need no labels: smoke photos outside the head are fine
            samples = datasets.label_samples(_load_samples(params), weights.classes, model.num_classes, weights.model)
    except ValueError as e:
        raise ParameterError([f"error: parameter data = {params.get('data')!r}: {e}"]) from None
    page = Page(params, model, weights, samples, model_title(weights.model, weights.pretrained))
    if images:
        _read_images(page)
    _check_against_data(page)
    if show:
        from IPython.display import Markdown, display

        from .tables import styled

        display(Markdown(weights_banner(weights)))
        display(styled(parameter_table(params, weights), caption="Parameters in force",
                       widths={"parameter": "18%"}))
        if page.skipped:
            display(Markdown(f"Skipped {len(page.skipped)} unreadable file(s): "
                             + "; ".join(f"`{path}` ({why})" for path, why in page.skipped)))
    return page

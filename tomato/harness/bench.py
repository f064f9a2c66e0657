"""Benchmark of the merge step against whole forwards (``python -m tomato bench``).

For each batch size, everything is timed in ONE interleaved run (medians, ratios to the
unpatched forward of the same run), on real photos from the embedded smoke set, and each
measurement also gets its aten-op and host-sync counts (:mod:`tomato.harness.dispatch`):

* forwards: unpatched; patched with merging off; merging on with ``sim=inf`` (the
  step runs, nothing merges); ToMato ``sim=1e-7`` (parallel and faithful) and
  ``tokens=k`` (parallel), each next to an *oracle* that simply keeps as many patch
  tokens (the first ones) after block 0: the cost floor of any merge-once method at that
  count (``vs_oracle``: ToMato's median over the oracle's); ToMe ``r=8``;
* the merge step alone (:func:`tomato.core.pipeline.merge_at_once`, the code the patched
  block runs) on the batch's block-0 features: parallel and faithful, fixed ``sim`` and
  token budget; plus a *reference-style* loop that, like the authors' code, recurses in
  Python with one torch op per token (:func:`tomato.core.reference.merge`; batch 1 only: the
  reference handles one image).

:func:`static_run` is the deployment benchmark: the unpatched model, the
keep-first-``k`` oracle and ToMato in static mode, each eager, compiled
(``fullgraph=True``), under ONNX Runtime and CUDA-graphed (on CUDA), all in one
interleaved run per batch size, each ratio against the unpatched model *under the same
treatment*.

Random-init weights are fine for speed (the FLOPs do not depend on the values), but their
features merge differently from a trained model's. :func:`record` writes the rows with
their provenance under ``data/results``.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..core import patch, pipeline, probe, reference
from ..core.grid import grid_index
from . import data, deploy, dispatch, models, provenance, records, timing


@dataclass
class Row:
    name: str
    median_ms: float
    iqr_ms: float
    ratio: float  # median / unpatched forward median, same run and batch
    tokens: float | None = None  # patch tokens kept (mean over the batch)
    batch: int = 1
    device: str = "cpu"
    ops: int | None = None  # aten ops of one call
    syncs: int | None = None  # host syncs of one call
    max_diff: float | None = None  # static bench: largest |logit - eager logit| of the same model
    vs_oracle: float | None = None  # median / the oracle's keeping as many tokens, same run and batch
    # 95% intervals of ``ratio`` and ``vs_oracle`` (rounds resampled in pairs; whole forwards only)
    ratio_low: float | None = None
    ratio_high: float | None = None
    vs_oracle_low: float | None = None
    vs_oracle_high: float | None = None


@dataclass(frozen=True)
class _Forward:
    """A whole forward to time: the call, its untimed setup (its model's settings: setting
    one validates it, host work no user pays per forward), the oracle row it is held
    against (None for the rows that have none), and the model it calls."""

    call: Callable[[], Any]
    setup: Callable[[], None]
    oracle: str | None = None
    model: nn.Module | None = None


def _forwards(plain: nn.Module, patched: nn.Module, images: torch.Tensor, k: int) -> dict[str, _Forward]:
    """Every whole forward of the benchmark, by row name."""
    tome = copy.deepcopy(plain)
    patch.tome(tome)
    # The oracle at the fixed sim's own token count: the length ToMato's merged sequence
    # has (the batch's largest group count), kept for free.
    patched.sim, patched.method = 1e-7, "parallel"
    with torch.inference_mode():
        patched(images)
    k_sim = int(patch.state(patched).tokens.max())
    at_sim, at_k = f"forward: oracle keeps first {k_sim}", f"forward: oracle keeps first {k}"
    # One model per row: a model called several times in a row keeps its weights in cache
    # and times faster than one called once a round (measured: a shared patched model ran
    # "merging off" 7% faster than the unpatched forward it equals).
    def own() -> nn.Module:
        return patch.timm(copy.deepcopy(plain))

    models: dict[str, tuple[nn.Module, dict[str, Any], str | None]] = {
        "forward: unpatched": (plain, {}, None),
        "forward: patched, merging off": (own(), dict(sim=None, keep_ratio=None, tokens=None), None),
        "forward: tomato sim=inf (nothing merges), parallel": (own(), dict(sim=math.inf, method="parallel"), None),
        "forward: tomato sim=1e-7, parallel": (patched, dict(sim=1e-7, method="parallel"), at_sim),
        "forward: tomato sim=1e-7, faithful": (own(), dict(sim=1e-7, method="faithful"), at_sim),
        at_sim: (deploy.keep_first(plain, k_sim), {}, None),
        f"forward: tomato tokens={k}, parallel": (own(), dict(tokens=k, method="parallel"), at_k),
        at_k: (deploy.keep_first(plain, k), {}, None),
        "forward: tome r=8": (tome, dict(r=8), None),
    }

    def forward(model: nn.Module) -> Callable[[], Any]:
        def f() -> Any:
            with torch.inference_mode():
                return model(images)
        return f

    def setup(model: nn.Module, settings: dict[str, Any]) -> Callable[[], None]:
        def put() -> None:
            for name, value in settings.items():
                if getattr(model, name) != value:
                    setattr(model, name, value)
        return put

    return {name: _Forward(forward(m), setup(m, st), oracle, m) for name, (m, st, oracle) in models.items()}


def _merge_steps(x: torch.Tensor, grid: tuple[int, int], p: int, k: int) -> dict[str, Callable[[], Any]]:
    fns: dict[str, Callable[[], Any]] = {}
    index = grid_index(grid, x.shape[1] - p, x.device)  # kept by a patched model, built once
    for label, chosen in (("sim=1e-7", dict(sim=1e-7)), (f"tokens={k}", dict(tokens=k))):
        for method in ("parallel", "faithful"):
            cfg = pipeline.Settings(**chosen, method=method)

            def f(cfg: pipeline.Settings = cfg) -> Any:
                with torch.inference_mode():
                    return pipeline.merge_at_once(x, cfg, grid, p, index=index)
            fns[f"merge step: {method}, {label}"] = f
    if x.shape[0] == 1:
        fns["merge step: reference-style loop, sim=1e-7"] = lambda: reference.merge(x, 1e-7, grid, p)[0]
    return fns


def _tokens(name: str, out: Any, patched: nn.Module, n: int, k: int, p: int) -> float | None:
    if name.startswith("merge step"):
        merged = out.merged if isinstance(out, pipeline.Step) else None
        return float(merged.counts.double().mean()) if merged is not None else float(out.shape[1] - p)
    if "unpatched" in name or "merging off" in name:
        return float(n)
    if "oracle" in name:
        return float(name.rsplit(" ", 1)[1])
    if "tomato" in name:
        return float(patch.state(patched).tokens.double().mean())
    return None


def run(model_name: str = "deit_base_patch16_224", runs: int = 30, warmup: int = 5,
        device: str = "cpu", threads: int | None = None, batch_sizes: Sequence[int] = (1,),
        tokens: int = 138, model: nn.Module | None = None, progress: bool = False,
        photos: torch.Tensor | None = None) -> list[Row]:
    """Time and count everything listed in the module docstring; one Row per measurement
    and batch size. ``model``: an unpatched model already on ``device`` (left unchanged;
    the book passes its page's weights); None loads ``model_name`` with seeded random-init
    weights. ``progress``: a bar of the timing rounds of each batch size. ``photos``:
    (P, 3, H, W) as the model reads them (default: the embedded smoke photos); a batch of
    b repeats them, so batch 1 times the first."""
    if threads:
        torch.set_num_threads(threads)
    plain = model if model is not None else models.load(model_name, pretrained=False, seed=0, device=device)[0]
    patched = patch.timm(copy.deepcopy(plain))
    photos = data.smoke_images(plain, device) if photos is None else photos.to(device)
    grid = tuple(plain.patch_embed.grid_size)
    p, n = plain.num_prefix_tokens, grid[0] * grid[1]
    rows: list[Row] = []
    for b in batch_sizes:
        images = photos[torch.arange(b) % len(photos)]
        with torch.inference_mode():
            x = probe.block0(plain, images).x
        forwards = _forwards(plain, patched, images, tokens)
        setups = {name: f.setup for name, f in forwards.items()}
        fns = {**{name: f.call for name, f in forwards.items()}, **_merge_steps(x, grid, p, tokens)}
        counted: dict[str, tuple[dispatch.Counts, float | None]] = {}
        for name, fn in fns.items():
            setups.get(name, lambda: None)()
            fn()  # warm, and leaves the patched model's statistics of this variant
            with dispatch.count() as c:
                out = fn()
            model_ = forwards[name].model if name in forwards else None
            counted[name] = (c, _tokens(name, out, model_ if model_ is not None else patched, n, tokens, p))
        stats = timing.compare(fns, runs=runs, warmup=warmup, sync=timing.device_sync(device), progress=progress,
                               desc=f"merge-step benchmark, batch {b}", setup=setups)
        unpatched = stats["forward: unpatched"]
        for name, s in stats.items():
            c, tok = counted[name]
            oracle = forwards[name].oracle if name in forwards else None
            # Intervals for whole forwards, against rounds of the same run (a ratio of the
            # merge step alone to the forward is a share, not a comparison).
            lo, hi = timing.bootstrap_ratio(s.times, unpatched.times) if name in forwards else (None, None)
            olo, ohi = timing.bootstrap_ratio(s.times, stats[oracle].times) if oracle else (None, None)
            rows.append(Row(name, s.median * 1e3, s.iqr * 1e3, s.median / unpatched.median, tok, b,
                            str(device), c.ops, c.syncs,
                            vs_oracle=None if oracle is None else s.median / stats[oracle].median,
                            ratio_low=lo, ratio_high=hi, vs_oracle_low=olo, vs_oracle_high=ohi))
    return rows


#: The treatments :func:`static_run` knows, in the order it times them.
TREATMENTS = ("eager", "compiled", "onnxruntime", "cuda-graph")


def _treated(treatment: str, model: nn.Module, images: torch.Tensor, workdir: Path, label: str,
             threads: int | None) -> Callable[[], Any]:
    """One forward of ``model`` on ``images`` under ``treatment``, ready to time."""
    if treatment == "eager":
        def eager() -> Any:
            with torch.inference_mode():
                return model(images)
        return eager
    if treatment == "compiled":
        fn = deploy.compiled(model)

        def comp() -> Any:
            with torch.inference_mode():
                return fn(images)
        return comp
    if treatment == "onnxruntime":
        path = deploy.export_onnx(model, images, workdir / f"{label}-b{images.shape[0]}.onnx")
        run_onnx, arr = deploy.onnx_runner(path, threads), images.cpu().numpy()
        return lambda: run_onnx(arr)
    if treatment == "cuda-graph":
        return deploy.cuda_graphed(model, images)
    raise ValueError(f"unknown treatment {treatment!r}; choose from {', '.join(TREATMENTS)}")


def static_run(model_name: str = "deit_base_patch16_224", runs: int = 30, warmup: int = 5,
               device: str = "cpu", threads: int | None = None, batch_sizes: Sequence[int] = (1, 8, 64),
               tokens: int = 138, treatments: Sequence[str] = ("eager", "onnxruntime"),
               model: nn.Module | None = None, progress: bool = False) -> list[Row]:
    """Time the static-shape paths (see the module docstring); one Row per model,
    treatment and batch size, ``ratio`` against the unpatched model of the same treatment.
    Eager rows also carry their op and sync counts; the static ToMato row's ``tokens`` is
    the mean of the real groups (the sequence is always ``tokens`` long)."""
    import tempfile

    unknown = [t for t in treatments if t not in TREATMENTS]
    if unknown:
        raise ValueError(f"unknown treatment {unknown[0]!r}; choose from {', '.join(TREATMENTS)}")
    if "cuda-graph" in treatments and torch.device(device).type != "cuda":
        raise ValueError("the cuda-graph treatment needs --device cuda")
    if threads:
        torch.set_num_threads(threads)
    plain = model if model is not None else models.load(model_name, pretrained=False, seed=0, device=device)[0]
    variants = {"unpatched": plain, f"oracle keeps first {tokens}": deploy.keep_first(plain, tokens),
                f"tomato tokens={tokens}, static": deploy.static_tomato(plain, tokens)}
    photos = data.smoke_images(plain, device)
    n = plain.patch_embed.grid_size[0] * plain.patch_embed.grid_size[1]
    rows: list[Row] = []
    for b in batch_sizes:
        images = photos[torch.arange(b) % len(photos)].contiguous()
        if "compiled" in treatments:
            # Three models of one class per batch size would soon pass dynamo's recompile
            # limit (8 per code object), past which it runs eager without a word.
            torch._dynamo.reset()
        with tempfile.TemporaryDirectory(prefix="tomato-static-") as tmp:
            fns = {f"{t}: {label}": _treated(t, m, images, Path(tmp), f"{i}", threads)
                   for t in treatments for i, (label, m) in enumerate(variants.items())}
            with torch.inference_mode():
                reference = {label: m(images).float().cpu() for label, m in variants.items()}
            counted: dict[str, tuple[int | None, int | None, float]] = {}
            diffs: dict[str, float] = {}
            for name, fn in fns.items():
                label = name.split(": ", 1)[1]
                # Warm (and compile) before counting and timing, and check the treatment
                # computes what eager does: a stale compiled graph or a wrong export would
                # otherwise time the wrong model.
                got = torch.as_tensor(fn()).float().cpu()
                want = reference[label]
                diffs[name] = float((got - want).abs().max())
                if diffs[name] > 1e-3 * max(1.0, float(want.abs().max())):
                    raise RuntimeError(f"{name}: logits differ from eager by {diffs[name]:.3g}")
                tok = float(n) if label == "unpatched" else float(tokens)
                if label.startswith("tomato"):
                    tok = float(patch.state(variants[label]).tokens.double().mean())
                if name.startswith("eager"):
                    with dispatch.count() as c:
                        fn()
                    counted[name] = (c.ops, c.syncs, tok)
                else:
                    counted[name] = (None, None, tok)
            stats = timing.compare(fns, runs=runs, warmup=warmup, sync=timing.device_sync(device),
                                   progress=progress, desc=f"static-shape benchmark, batch {b}")
        for name, st in stats.items():
            treatment = name.split(": ", 1)[0]
            base = stats[f"{treatment}: unpatched"].median
            oracle = stats[f"{treatment}: oracle keeps first {tokens}"].median if "tomato" in name else None
            ops, syncs, tok = counted[name]
            rows.append(Row(name, st.median * 1e3, st.iqr * 1e3, st.median / base, tok, b, str(device), ops, syncs,
                            diffs[name], None if oracle is None else st.median / oracle))
    return rows


def format_rows(rows: list[Row], header: str = "") -> str:
    """A plain-text table of :func:`run`'s rows (the median stays the first number after
    the name, where a reader of the text looks for it)."""
    lines = [header] if header else []
    lines.append(f"{'measurement':52s} {'median ms':>10s} {'IQR ms':>8s} {'x forward':>10s} {'x oracle':>9s} "
                 f"{'tokens':>7s} {'ops':>6s} {'syncs':>5s} {'batch':>5s}")
    for r in rows:
        tok = "" if r.tokens is None else f"{r.tokens:.1f}"
        ops = "" if r.ops is None else str(r.ops)
        syncs = "" if r.syncs is None else str(r.syncs)
        orc = "" if r.vs_oracle is None else f"{r.vs_oracle:.4f}"
        lines.append(f"{r.name:52s} {r.median_ms:10.3f} {r.iqr_ms:8.3f} {r.ratio:10.4f} {orc:>9s} "
                     f"{tok:>7s} {ops:>6s} {syncs:>5s} {r.batch:5d}")
    return "\n".join(lines)


def record(rows: list[Row], out: str | Path, of: str = "bench", **fields: Any) -> Path:
    """Write rows + provenance as a record of kind ``of`` (``"bench"``, or ``"static"`` for
    :func:`static_run`'s rows): ``{"rows": [...], "provenance": {...}}``."""
    return records.write(of, out, {"rows": [asdict(r) for r in rows], "provenance": provenance.collect(**fields)})

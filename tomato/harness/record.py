"""One command records every weights-dependent number the book reads, for one model.

``python -m tomato record --checkpoint deit-tiny-imagenette --data ../shared/imagenette/val``
fills one folder (default ``data/results/<model>/``)::

    manifest.json                the weights, the command, one entry per record (manifest.py)
    table1/                      Table 1 in miniature: a run folder per variant, timing.json
                                 (batch 1), sweep.csv (accuracy, top-5, tokens, GFLOPs, speed-up)
    beyond/                      the beyond-the-paper variants, the same layout; its timing.json
                                 is table1's: every variant of both is timed in one interleaved
                                 run, so a variant on two pages has one speed-up
    fidelity_<data>.json         drift from the unpatched model, null baselines and ToMe at
                                 ToMato's per-photo token count
    agreement_<data>.json        faithful against parallel partitions
    robust-b8_<device>.json      Table 1's variants timed at batch 8
    bench-static_<device>.json   static mode beside the unpatched model and the keep-first-k oracle
    bench_<device>.json          the merge step's cost, ops and syncs (``python -m tomato bench``)
    payoff_<device>.json         speed-up against token cut, ToMato and the oracle (``bench --payoff``)

At the compute floor: accuracy passes never time and timings never run over the whole
data; each photo is decoded once (:class:`tomato.harness.decoded.Photos`) and a variant
that two records share is evaluated once (its run folder is copied). Every variant
(every one runs one batch size: each gives a photo the result of a batch of one) times
its own forwards on the decoded photos, scaled to all the photos where a resume split it:
the *floor*, the time the same forwards take with nothing else around them (a timing
record's floor is its own time); the manifest keeps it beside the wall time
(``floor_s``, ``wall_s``).

Killed anywhere, the command continues from what is on disk: run folders resume batch by
batch, the fidelity study keeps one part per batch (its null baselines seeded by batch), a
finished record is not redone, and the manifest carries the progress, so a folder
committed half-way resumes on another machine. Batches are fixed chunks of the photos,
so a resumed pass sees the batches an uninterrupted one does.
"""
from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from . import agreement, bench, data, fidelity, manifest, payoff, provenance, records, speed, sweep
from .decoded import Photos
from .evaluate import evaluate
from .models import WeightsInfo
from .results import claim_folder
from .variants import parse

__all__ = ["Plan", "PLANS", "record", "default_out"]


@dataclass(frozen=True)
class Plan:
    """What one recording holds: the variants of each record and how each is timed."""

    table1: tuple[str, ...]
    beyond: tuple[str, ...]
    fidelity_sims: tuple[float, ...]
    fidelity_keep: tuple[float, ...]
    agreement_sims: tuple[float, ...] = (1e-7,)
    agreement_keep: tuple[float, ...] = (0.85,)
    agreement_photos: int = 500
    batch_size: int = 50
    timing_images: int = 8
    runs_b1: int = 30
    runs_b8: int = 30
    warmup: int = 5
    static_batches: tuple[int, ...] = (1, 8, 64)
    static_treatments: tuple[str, ...] = ("eager", "onnxruntime")
    static_tokens: int = 138
    null_seed: int = 0
    bench_runs: int = 60
    bench_batches: tuple[int, ...] = (1, 8)
    # Dense where the trained DeiT-Ti's speed-up crosses 1 (between cuts of about 12% and 30%).
    payoff_sims: tuple[float, ...] = (1e-3, 1e-7, 1e-15, 1e-20, 1e-30, 1e-40, 1e-50, 1e-60, 1e-90)
    payoff_batches: tuple[int, ...] = (1, 8)

    @property
    def timed(self) -> tuple[str, ...]:
        """Every variant timed at batch 1, once: Table 1's, then the others of beyond."""
        return tuple(dict.fromkeys(parse(s).spec for s in (*self.table1, *self.beyond)))


_TABLE1 = ("deit", "tome:r=2", "tome:r=4", "tome:r=8", "tome:r=16",
           "tomato:sim=0.001", "tomato:sim=1e-7", "tomato:sim=1e-15", "tomato:sim=1e-30", "tomato:sim=1e-60",
           "tomato:keep=0.9", "tomato:keep=0.7", "tomato:keep=0.5")
_BEYOND = ("deit", "tome:r=4", "tome:r=8", "tome:r=12", "tome:r=16",
           *(f"tomato:sim={s}" for s in ("1e-7", "1e-15", "1e-30", "1e-60", "1e-90")),
           *(f"tomato:keep={k}" for k in ("0.9", "0.7", "0.5", "0.3")),
           *(f"tomato:keep={k},block={b}" for b in (1, 2, 3, 6) for k in ("0.7", "0.5", "0.3")),
           *(f"tomato:keep={k},metric={m}" for m in ("attention", "keys", "cosine") for k in ("0.7", "0.5")),
           *(f"hybrid:sim=1e-15,r={r}" for r in (2, 4, 8)))

#: The book's recording, and a tiny one for tests and a first try on a new machine.
PLANS: dict[str, Plan] = {
    "book": Plan(_TABLE1, _BEYOND, fidelity_sims=(1e-7, 1e-15, 1e-30), fidelity_keep=(0.5,)),
    "smoke": Plan(("deit", "tome:r=2", "tomato:sim=1e-7", "tomato:keep=0.5"),
                  ("deit", "tomato:keep=0.5", "tomato:keep=0.5,block=1", "hybrid:sim=1e-15,r=2"),
                  fidelity_sims=(1e-7,), fidelity_keep=(), agreement_photos=4, batch_size=4, timing_images=2,
                  runs_b1=3, runs_b8=3, warmup=1, static_batches=(1,), static_treatments=("eager",),
                  bench_runs=3, bench_batches=(1,), payoff_sims=(1e-7,), payoff_batches=(1,)),
}

_PARTS = ".fidelity-parts"


def default_out(checkpoint: str | None) -> Path | None:
    """``data/results/<name>`` for a model under ``data/weights`` named by its short name."""
    if checkpoint and "/" not in checkpoint and not checkpoint.endswith((".pth", ".safetensors", ".pt")):
        return Path("data/results") / checkpoint
    return None


def _data_tag(label: str) -> str:
    """``imagenette-val`` for ``.../imagenette/val``: a file-name tag for the data."""
    parts = [p for p in Path(label).parts[-2:] if p not in ("/", "..")]
    return "-".join(parts) or "data"


def _device_tag(device: str) -> str:
    return f"cpu-{torch.get_num_threads()}threads" if str(device) == "cpu" else str(device).replace(":", "")


@dataclass
class _Session:
    """The recording's state on disk (the manifest), and this session's clock."""

    out: Path
    state: dict[str, Any]
    started: float = field(default_factory=time.perf_counter)
    # The code this session runs: a commit made while it runs must not be credited.
    code: dict[str, Any] = field(default_factory=provenance.start)

    def save(self) -> None:
        sessions = self.state.setdefault("sessions", [])
        sessions[-1]["wall_s"] = round(time.perf_counter() - self.started, 1)
        self.state["wall_s"] = round(sum(s["wall_s"] for s in sessions), 1)
        manifest.write(self.out, self.state)

    def done(self, name: str) -> bool:
        return name in manifest.listed(self.state)

    def add(self, name: str, kind: str, weights: WeightsInfo, wall_s: float, floor_s: float,
            device: str) -> None:
        git = self.code["git"]
        self.state["records"].append({
            "path": name, "kind": kind, "weights_sha256": weights.sha256, "command": self.state["command"],
            "commit": git.get("commit"), "dirty": git.get("dirty"), "device": device,
            "wall_s": round(wall_s, 1), "floor_s": round(floor_s, 1), "date_utc": provenance.now()})
        self.save()


def _plan_settings(plan: Plan) -> dict[str, Any]:
    """Every setting of ``plan`` as the manifest's JSON holds it (tuples as lists)."""
    return provenance.jsonable(asdict(plan))


def _open(out: Path, weights: WeightsInfo, data_label: str, plan_name: str, command: str) -> _Session:
    """The session of ``out``: a new manifest, or the one a killed run left (same weights,
    data and plan, to every setting of the plan: a plan changed by newer code would mix
    two protocols in one folder), else ValueError before anything is touched."""
    settings = _plan_settings(PLANS[plan_name])
    state = manifest.read(out)
    if state is None:
        leftovers = sorted(p.name for p in out.iterdir() if p.name != ".lock")
        if leftovers:
            raise ValueError(f"--out {out} holds {', '.join(leftovers[:5])} but no {manifest.MANIFEST}: it is not "
                             f"a recording of ours, and nothing in it is touched; choose a new or empty --out")
        state = {"model": weights.model, "weights_source": weights.source, "weights_sha256": weights.sha256,
                 "data": data_label, "plan": plan_name, "plan_settings": settings, "command": command,
                 "records": [], "complete": False}
    else:
        wanted = {"weights_sha256": weights.sha256, "data": data_label, "plan": plan_name, "plan_settings": settings}
        diff = {k: (state.get(k), v) for k, v in wanted.items() if state.get(k) != v}
        if diff:
            said = "; ".join(f"the {plan_name!r} plan's settings changed since it was recorded"
                             if k == "plan_settings" else f"{k}: recorded {a!r}, now {b!r}"
                             for k, (a, b) in diff.items())
            raise ValueError(f"--out {out} holds the recording of another run ({said}); choose another --out or "
                             f"delete {out}")
    state.setdefault("sessions", []).append({"started_utc": provenance.now(), "wall_s": 0.0})
    session = _Session(out, state)
    session.save()
    return session


# ----------------------------------------------------------------------------- the floor
def _forward_s(summary: dict[str, Any]) -> float:
    """Seconds the forwards of one evaluation take over all its photos: the model time of
    its last session's batches (photos already decoded: nothing else inside), scaled to all."""
    rate = summary.get("images_per_s_last_session")
    return summary["n_images"] / rate if rate else 0.0


# ----------------------------------------------------------------------------- the passes
def _accuracy(name: str, specs: Sequence[str], session: _Session, model: nn.Module, weights: WeightsInfo,
              samples: Sequence[data.Sample], photos: Photos, plan: Plan, data_label: str, device: str,
              progress: bool) -> float:
    """A sweep folder: every variant evaluated (or copied from another record's folder that
    evaluated it), with its batch-1 timing from the one interleaved run of every timed
    variant (``table1/timing.json``, made by the first sweep, copied by the next); returns
    the floor seconds."""
    folder = session.out / name
    folder.mkdir(exist_ok=True)
    vs = [parse(s) for s in specs]
    summaries = {}
    forward_s = session.state.setdefault("forward_s", {})
    for v in vs:
        run = folder / sweep.slug(v)
        shared = [session.out / r["path"] / sweep.slug(v) for r in session.state["records"] if r["kind"] == "sweep"]
        source = next((s for s in shared if (s / "summary.json").is_file()), None)
        if source is not None and not run.exists():
            shutil.copytree(source, run, ignore=shutil.ignore_patterns(".lock"))
        summaries[v.spec] = evaluate(model, weights, v, samples, run, data_label=data_label,
                                     batch_size=plan.batch_size, device=device, progress=progress, photos=photos,
                                     started=session.code)
        if source is None and summaries[v.spec].get("images_per_s_last_session"):
            forward_s[f"{name}/{v.spec}"] = round(_forward_s(summaries[v.spec]), 1)
            session.save()
    t0 = time.perf_counter()
    shared_timing = session.out / "table1" / "timing.json"
    timed = sweep.timed_rows(model, weights, [parse(s) for s in plan.timed], _speed_photos(photos, plan, 1),
                             shared_timing, runs=plan.runs_b1, warmup=plan.warmup, device=device,
                             data_label=data_label, progress=progress, started=session.code)
    if folder / "timing.json" != shared_timing:
        shutil.copyfile(shared_timing, folder / "timing.json")
    timing_s = time.perf_counter() - t0
    sweep.write_table(model, vs, summaries, timed, folder)
    parse("deit").apply(model)
    return timing_s + sum(forward_s.get(f"{name}/{v.spec}", 0.0) for v in vs)


def _fidelity(name: str, session: _Session, model: nn.Module, weights: WeightsInfo,
              samples: Sequence[data.Sample], photos: Photos, plan: Plan, data_label: str, device: str,
              progress: bool) -> float:
    """The fidelity study, one part per batch under a hidden folder, then one record."""
    parts = session.out / _PARTS
    parts.mkdir(exist_ok=True)
    started = session.code
    settings = fidelity.settings_of(plan.fidelity_sims, plan.fidelity_keep)
    rows: list[dict[str, Any]] = []
    floor = 0.0
    chunks = photos.batches(plan.batch_size)
    total = math.ceil((len(photos.images) + len(photos.bad)) / plan.batch_size)
    for k, (images, labels, indices, _) in enumerate(tqdm(chunks, desc="fidelity", total=total,
                                                          disable=not progress)):
        part = parts / f"{k:05d}.json"
        got = manifest.read_part(part)
        if got is None:
            # Seeded by batch, so a resumed study draws what an uninterrupted one draws.
            gen = torch.Generator().manual_seed(plan.null_seed * 1_000_003 + k)
            t0 = time.perf_counter()
            batch = fidelity.batch_rows(model, images.to(device), labels, indices, settings, gen) if len(indices) else []
            got = {"rows": batch, "forward_s": time.perf_counter() - t0}
            manifest.write_part(part, got)
        rows += got["rows"]
        floor += got["forward_s"]
    rec = fidelity.record(weights.model, model, weights.source, weights.sha256, samples, data_label,
                          plan.fidelity_sims, plan.fidelity_keep, plan.null_seed, plan.batch_size,
                          result=fidelity.assemble(rows), started=started)
    records.write("fidelity", session.out / name, rec)
    shutil.rmtree(parts)
    return floor


def _agreement(name: str, session: _Session, model: nn.Module, weights: WeightsInfo,
               samples: Sequence[data.Sample], photos: Photos, plan: Plan, data_label: str, progress: bool) -> float:
    """Faithful against parallel partitions on ``agreement_photos`` photos spread evenly."""
    started = session.code
    good = photos.indices.tolist()
    keep = good[:: max(1, len(good) // plan.agreement_photos)][:plan.agreement_photos]
    t0 = time.perf_counter()
    rows = agreement.method_agreement(model, samples, sims=plan.agreement_sims, keep_ratios=plan.agreement_keep,
                                      photos=photos.subset(keep), progress=progress)
    floor = time.perf_counter() - t0
    records.write("agreement", session.out / name, agreement.record(
        rows, started, weights, f"{data_label} ({len(keep)} photos spread evenly)", len(keep),
        plan.agreement_sims, plan.agreement_keep, "features"))
    return floor


def _batch8(name: str, session: _Session, model: nn.Module, weights: WeightsInfo, photos: Photos, plan: Plan,
            data_label: str, device: str, progress: bool) -> float:
    started = session.code
    images = _speed_photos(photos, plan, 8)
    config = {**speed.run_config("robust", weights, data_label, plan.table1, device, torch.get_num_threads()),
              "images": int(images.shape[0]), "batch_sizes": [8], "runs": plan.runs_b8, "warmup": plan.warmup,
              "budget_s": None}
    t0 = time.perf_counter()
    rows = speed.measure_variants(model, plan.table1, images, batch_sizes=[8], runs=plan.runs_b8,
                                  warmup=plan.warmup, device=device, progress=progress)
    floor = time.perf_counter() - t0
    parse("deit").apply(model)
    records.write("timing", session.out / name, {"config": config, "rows": rows, "summary": [],
                                                 "provenance": provenance.collect(started, **config)})
    return floor


def _static(name: str, session: _Session, model: nn.Module, weights: WeightsInfo, plan: Plan, device: str,
            progress: bool) -> float:
    started = session.code
    t0 = time.perf_counter()
    rows = bench.static_run(weights.model, runs=plan.runs_b8, warmup=plan.warmup, device=device,
                            batch_sizes=plan.static_batches, tokens=plan.static_tokens,
                            treatments=plan.static_treatments, model=model, progress=progress)
    floor = time.perf_counter() - t0
    bench.record(rows, session.out / name, "static", started=started, model=weights.model, weights=weights.source,
                 weights_sha256=weights.sha256, device=device, batch_sizes=list(plan.static_batches),
                 tokens=plan.static_tokens, runs=plan.runs_b8, warmup=plan.warmup, threads=torch.get_num_threads(),
                 static=True, treatments=list(plan.static_treatments))
    return floor


def _bench(name: str, session: _Session, model: nn.Module, weights: WeightsInfo, photos: Photos, plan: Plan,
           data_label: str, device: str, progress: bool) -> float:
    """The merge step's cost beside the unpatched model and the oracle (``python -m tomato bench``),
    on the photos Table 1's variants are timed on."""
    started = session.code
    t0 = time.perf_counter()
    timed, named = _timing_photos(photos, plan)
    rows = bench.run(weights.model, runs=plan.bench_runs, warmup=plan.warmup, device=device,
                     batch_sizes=plan.bench_batches, tokens=plan.static_tokens, model=model, progress=progress,
                     photos=timed)
    floor = time.perf_counter() - t0
    bench.record(rows, session.out / name, "bench", started=started, model=weights.model, weights=weights.source,
                 weights_sha256=weights.sha256, device=device, batch_sizes=list(plan.bench_batches),
                 tokens=plan.static_tokens, runs=plan.bench_runs, warmup=plan.warmup,
                 threads=torch.get_num_threads(), static=False, data=data_label,
                 photos=named)
    return floor


def _timing_photos(photos: Photos, plan: Plan) -> tuple[torch.Tensor, str]:
    """Table 1's timing photos, for the other speed records of the model (a batch of b takes
    the first b of them: batch 1 times the first), and how a record's provenance names them."""
    timed = _speed_photos(photos, plan, 1)
    k = len(timed)
    return timed, f"the first min(batch, {k}) of Table 1's {k} timing photos"


def _speed_photos(photos: Photos, plan: Plan, batch: int) -> torch.Tensor:
    """(M, 3, H, W): the photos a speed record at ``batch`` rotates through: Table 1's timing
    photos at batch 1, twice as many at a larger batch (two distinct batches of 8)."""
    return photos.images[:plan.timing_images * (1 if batch == 1 else 2)]


def _payoff(name: str, session: _Session, model: nn.Module, weights: WeightsInfo, photos: Photos, plan: Plan,
            data_label: str, device: str, progress: bool) -> float:
    """Speed-up against token cut, ToMato and the keep-first-k oracle (``bench --payoff``)."""
    started = session.code
    t0 = time.perf_counter()
    # Each batch size on the photos its speed record rotates through, so that the payoff's
    # point at a Table 1 sim times what that record timed.
    points = [p for b in plan.payoff_batches
              for p in payoff.run(model, plan.payoff_sims, (b,), runs=plan.runs_b1, warmup=plan.warmup,
                                  device=device, progress=progress, photos=_speed_photos(photos, plan, b))]
    k = plan.timing_images
    named = f"batch 1: Table 1's {k} timing photos, one a call; a larger batch: the batch-8 record's {2 * k}"
    floor = time.perf_counter() - t0
    payoff.record(points, session.out / name, started=started, model=weights.model, weights=weights.source,
                  weights_sha256=weights.sha256, pretrained=weights.pretrained, device=device,
                  batch_sizes=list(plan.payoff_batches), sims=list(plan.payoff_sims), runs=plan.runs_b1,
                  warmup=plan.warmup, threads=torch.get_num_threads(), data=data_label,
                  photos=named)
    return floor


def record(model: nn.Module, weights: WeightsInfo, samples: Sequence[data.Sample], out: Path | str, *,
           data_label: str, plan: str = "book", device: str = "cpu", workers: int = 2, command: str = "",
           progress: bool = True, say: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Record every pass of ``PLANS[plan]`` for the plain timm ``model`` into ``out``;
    returns the finished manifest. ``out`` is locked for the whole call (one owner)."""
    chosen = PLANS[plan]
    out, created, lock = claim_folder(out)
    try:
        session = _open(out, weights, data_label, plan, command)
        t0 = time.perf_counter()
        photos = Photos.decode(samples, data.transform_for(model), workers=workers, progress=progress)
        say(f"decoded {len(photos.images)} photos in {time.perf_counter() - t0:.0f} s"
            + (f" ({len(photos.bad)} could not be read)" if photos.bad else ""))
        model = model.to(device).eval()
        tag, dev = _data_tag(data_label), _device_tag(device)
        passes: list[tuple[str, str, Callable[[str], float]]] = [
            ("table1", "sweep", lambda n: _accuracy(n, chosen.table1, session, model, weights, samples, photos,
                                                    chosen, data_label, device, progress)),
            ("beyond", "sweep", lambda n: _accuracy(n, chosen.beyond, session, model, weights, samples, photos,
                                                    chosen, data_label, device, progress)),
            (f"fidelity_{tag}.json", "fidelity", lambda n: _fidelity(n, session, model, weights, samples, photos,
                                                                      chosen, data_label, device, progress)),
            (f"agreement_{tag}.json", "agreement", lambda n: _agreement(n, session, model, weights, samples,
                                                                         photos, chosen, data_label, progress)),
            (f"robust-b8_{dev}.json", "timing", lambda n: _batch8(n, session, model, weights, photos, chosen,
                                                                   data_label, device, progress)),
            (f"bench-static_{dev}.json", "static", lambda n: _static(n, session, model, weights, chosen, device,
                                                                      progress)),
            (f"bench_{dev}.json", "bench", lambda n: _bench(n, session, model, weights, photos, chosen, data_label,
                                                            device, progress)),
            (f"payoff_{dev}.json", "payoff", lambda n: _payoff(n, session, model, weights, photos, chosen, data_label,
                                                               device, progress)),
        ]
        for name, kind, run in passes:
            if session.done(name):
                continue
            say(f"recording {name} ...")
            t0 = time.perf_counter()
            floor = run(name)
            session.add(name, kind, weights, time.perf_counter() - t0, floor, device)
            say(f"  {name}: {time.perf_counter() - t0:.0f} s (floor {floor:.0f} s)")
        session.state["floor_s"] = round(sum(r["floor_s"] for r in session.state["records"]), 1)
        session.state["complete"] = True
        session.save()
        return session.state
    finally:
        lock.release()


def summary_lines(state: dict[str, Any]) -> list[str]:
    """What ``python -m tomato record`` prints at the end: each record's wall and floor."""
    lines = [f"{r['path']:40s} {r['kind']:10s} wall {r['wall_s']:8.1f} s  floor {r['floor_s']:8.1f} s"
             for r in state["records"]]
    ratio = state["wall_s"] / state["floor_s"] if state.get("floor_s") else math.nan
    lines.append(f"{'all':40s} {'':10s} wall {state['wall_s']:8.1f} s  floor {state.get('floor_s', 0):8.1f} s"
                 f"  (wall / floor {ratio:.2f})")
    return lines



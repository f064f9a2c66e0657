"""Clocks, statistics and the two timing protocols (the machine a timing ran on is
:mod:`tomato.harness.machine`'s).

The two protocols, kept apart on purpose (:mod:`tomato.harness.speed` runs them on models):

``robust`` (ours) -- :func:`compare`
    Warm-up forwards that are not timed, then at least ``runs`` timed rounds (or as many
    as a time budget allows), the variants interleaved round-robin so that drift on a
    shared machine (thermal throttling, a neighbour's job) hits every variant alike. We
    report medians and IQRs, and :func:`bootstrap_ratio` gives each ratio of medians a
    bootstrap interval.
``paper`` (the authors') -- :func:`paper_forwards`
    What the ToMato authors' script did for the paper's latency, as decoded from their
    Nsight Systems reports (:mod:`tomato.book.paper`): one picture, 11 forwards at
    batch 1 on the Jetson Nano's CPU, no warm-up, each forward in an NVTX range
    ``Forward i``; the paper's number is the mean per forward.

GPU work is asynchronous, so each timed region is bracketed by a ``sync`` callable
(see :func:`device_sync`); without it one would time the kernel launches only.

To see the ranges in Nsight Systems on a CPU run (install the ``nvtx`` package; see
:mod:`tomato.harness.ranges`)::

    nsys profile -t nvtx,osrt -o tomato_paper_%p python -m tomato time --protocol paper \\
        --device cpu --threads 4 --variants deit tome:r=2 tomato:sim=1e-7
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable as _Callable

import numpy as np
import torch


__all__ = [
    "TimingStats",
    "measure",
    "compare",
    "ratios",
    "bootstrap_ratio",
    "paper_forwards",
    "mean_difference",
    "device_sync",
    "PAPER_FORWARDS",
    "MIN_RUNS",
]

log = logging.getLogger(__name__)

# typing's Callable: these aliases are evaluated at import time, and collections.abc's
# Callable is not subscriptable before Python 3.9.
Clock = _Callable[[], float]
Sync = _Callable[[], None]

#: Forwards per report in the authors' timing script (one picture, batch 1).
PAPER_FORWARDS = 11
#: Fewest timed rounds the robust protocol accepts by default at batch 1: with fewer, the
#: median of a busy CPU moves by more than the differences we want to see.
MIN_RUNS = 30



@dataclass
class TimingStats:
    """Individually timed runs (seconds) and summaries of them."""

    times: list[float] = field(default_factory=list)

    def _array(self) -> np.ndarray:
        if not self.times:
            raise ValueError("TimingStats has no times to summarise")
        return np.asarray(self.times, dtype=np.float64)

    def _pct(self, q: float) -> float:
        # "linear" is numpy's default; named explicitly so the definition is pinned.
        return float(np.percentile(self._array(), q, method="linear"))

    @property
    def n(self) -> int:
        """Number of timed runs."""
        return len(self.times)

    @property
    def median(self) -> float:
        """Median run time."""
        return self._pct(50)

    @property
    def mean(self) -> float:
        """Mean run time (what the paper reports; sensitive to outliers)."""
        return float(self._array().mean())

    @property
    def sd(self) -> float:
        """Sample standard deviation (``ddof=1``; 0 for a single run)."""
        t = self._array()
        return float(t.std(ddof=1)) if t.size > 1 else 0.0

    @property
    def q1(self) -> float:
        """First quartile (25th percentile, linear interpolation)."""
        return self._pct(25)

    @property
    def q3(self) -> float:
        """Third quartile (75th percentile, linear interpolation)."""
        return self._pct(75)

    @property
    def iqr(self) -> float:
        """Interquartile range ``q3 - q1``."""
        return self.q3 - self.q1

    @property
    def min(self) -> float:
        """Fastest run (a lower bound on the achievable latency)."""
        return float(self._array().min())

    @property
    def max(self) -> float:
        """Slowest run."""
        return float(self._array().max())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary including the raw times."""
        return {
            "n": self.n,
            "median": self.median,
            "mean": self.mean,
            "sd": self.sd,
            "q1": self.q1,
            "q3": self.q3,
            "iqr": self.iqr,
            "min": self.min,
            "max": self.max,
            "times": [float(t) for t in self.times],
        }


def _noop() -> None:
    return None


def _timed_call(fn: Callable[[], object], clock: Clock, sync: Sync) -> float:
    # Sync before starting the clock so queued work from earlier calls is not billed to
    # this one, and after fn so its asynchronous kernels are.
    sync()
    t0 = clock()
    fn()
    sync()
    t1 = clock()
    return t1 - t0


def _check_runs(runs: int, warmup: int) -> None:
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")


def measure(
    fn: Callable[[], object],
    *,
    runs: int = MIN_RUNS,
    warmup: int = 5,
    clock: Clock = time.perf_counter,
    sync: Sync | None = None,
) -> TimingStats:
    """Call ``fn`` ``warmup`` times untimed, then time ``runs`` calls one by one."""
    _check_runs(runs, warmup)
    sync = sync or _noop
    for _ in range(warmup):
        fn()
    sync()
    return TimingStats([_timed_call(fn, clock, sync) for _ in range(runs)])


def compare(
    fns: Mapping[str, Callable[[], object]],
    *,
    runs: int = MIN_RUNS,
    warmup: int = 5,
    budget_s: float | None = None,
    clock: Clock = time.perf_counter,
    sync: Sync | None = None,
    interleave: bool = True,
    progress: bool = False,
    desc: str = "timing rounds",
    setup: Mapping[str, Callable[[], object]] | None = None,
) -> dict[str, TimingStats]:
    """The robust protocol: time several variants in one run, round-robin by default.

    ``warmup`` untimed rounds, then ``runs`` timed rounds (run i of every variant, then
    i+1); with ``budget_s`` further rounds follow until that many wall-clock seconds of
    timed rounds have passed. Interleaving makes slow drift (thermal throttling, other
    jobs on a shared machine) affect all variants alike, so their *ratios* stay meaningful
    even when absolute times move; round i of two variants also forms a pair for
    :func:`bootstrap_ratio`. With ``interleave=False`` each variant runs to completion in
    turn (no budget). ``progress`` shows a bar of the rounds (warm-up included).
    ``setup``: per variant, a call made untimed right before each of its calls (to put a
    shared model into that variant's state without billing the switch to the variant).
    """
    if not fns:
        raise ValueError("compare() needs at least one variant")
    _check_runs(runs, warmup)
    if budget_s is not None and budget_s <= 0:
        raise ValueError(f"budget_s must be > 0 seconds, got {budget_s}")
    sync = sync or _noop
    if not interleave:
        done = {}
        for name, fn in fns.items():
            (setup or {}).get(name, _noop)()
            done[name] = measure(fn, runs=runs, warmup=warmup, clock=clock, sync=sync)
        return done
    from tqdm.auto import tqdm

    times: dict[str, list[float]] = {name: [] for name in fns}
    bar = tqdm(total=warmup + runs, desc=desc, unit="round", disable=not progress, leave=False)
    before = dict(setup or {})
    for _ in range(warmup):
        for name, fn in fns.items():
            before.get(name, _noop)()
            fn()
        bar.update()
    sync()
    # The budget is wall time, read apart from ``clock`` so an injected clock stays exact.
    start = time.monotonic()
    rounds = 0
    order = list(fns.items())
    while rounds < runs or (budget_s is not None and time.monotonic() - start < budget_s):
        # Each round starts one variant later: a variant's place in the round (first after
        # the bookkeeping, or right after a given other) must not bias its time.
        shift = rounds % len(order)
        for name, fn in order[shift:] + order[:shift]:
            before.get(name, _noop)()
            times[name].append(_timed_call(fn, clock, sync))
        rounds += 1
        bar.update()
    bar.close()
    return {name: TimingStats(t) for name, t in times.items()}


def ratios(stats: Mapping[str, TimingStats], baseline: str) -> dict[str, float]:
    """Median time of each variant divided by the baseline's median (<1 is faster)."""
    if baseline not in stats:
        raise KeyError(f"baseline {baseline!r} not among variants {sorted(stats)}")
    base = stats[baseline].median
    return {name: s.median / base for name, s in stats.items()}


def bootstrap_ratio(
    times: Sequence[float],
    base: Sequence[float],
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``median(times) / median(base)``.

    When both hold the same number of runs they are taken as interleaved rounds and
    resampled in pairs (round i of both together), which keeps the drift they share out
    of the interval; otherwise each is resampled on its own. Seeded, so a record is
    reproducible. Returns ``(low, high)`` at ``level`` (two-sided).
    """
    t = np.asarray(times, dtype=np.float64)
    b = np.asarray(base, dtype=np.float64)
    if t.size == 0 or b.size == 0:
        raise ValueError("bootstrap_ratio needs at least one time on each side")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    it = rng.integers(0, t.size, size=(n_boot, t.size))
    ib = it if t.size == b.size else rng.integers(0, b.size, size=(n_boot, b.size))
    boot = np.median(t[it], axis=1) / np.median(b[ib], axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def paper_forwards(
    fn: Callable[[int], object],
    *,
    n: int = PAPER_FORWARDS,
    clock: Clock = time.perf_counter,
    sync: Sync | None = None,
) -> TimingStats:
    """The authors' protocol: ``n`` timed calls ``fn(i)``, i = 0..n-1, with no warm-up.

    ``fn`` receives the forward's index so it can open the ``Forward i`` NVTX range the
    authors' reports show (see :func:`tomato.harness.speed.paper_protocol`). The paper's
    latency is the mean of these times; their first forward was not slower than the
    rest, so no warm-up is dropped here either.
    """
    if n < 1:
        raise ValueError(f"the paper protocol needs at least one forward, got n={n}")
    sync = sync or _noop
    sync()
    return TimingStats([_timed_call(lambda i=i: fn(i), clock, sync) for i in range(n)])


def mean_difference(
    a: Sequence[float],
    b: Sequence[float],
    *,
    n_boot: int = 10000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Is ``mean(a) - mean(b)`` larger than the run-to-run spread of a and b?

    Welch's t-test (unequal variances: two reports need not spread alike; the paper
    reports means, so means are compared) and a percentile bootstrap interval of the
    difference of means, resampling each side on its own, which does not lean on
    normality with 11 values a side. Returns ``diff``, ``ci_low``, ``ci_high``, ``t``,
    ``df`` (Welch-Satterthwaite) and the two-sided ``p``.
    """
    from scipy import stats as st

    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.size < 2 or y.size < 2:
        raise ValueError("mean_difference needs at least two values a side")
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    df = (vx + vy) ** 2 / (vx ** 2 / (x.size - 1) + vy ** 2 / (y.size - 1))
    test = st.ttest_ind(x, y, equal_var=False)
    rng = np.random.default_rng(seed)
    boot = (x[rng.integers(0, x.size, (n_boot, x.size))].mean(axis=1)
            - y[rng.integers(0, y.size, (n_boot, y.size))].mean(axis=1))
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha])
    return {"diff": float(x.mean() - y.mean()), "ci_low": float(lo), "ci_high": float(hi),
            "t": float(test.statistic), "df": float(df), "p": float(test.pvalue)}


def device_sync(device: torch.device | str | None) -> Sync:
    """A callable that waits for queued work on ``device`` (no-op where not needed)."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda" and torch.cuda.is_available():
        return lambda: torch.cuda.synchronize(dev)
    mps = getattr(torch, "mps", None)
    if dev.type == "mps" and mps is not None and hasattr(mps, "synchronize"):
        return mps.synchronize
    # CPU ops run synchronously, so there is nothing to wait for.
    return _noop

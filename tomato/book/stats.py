"""The book's statistics, one implementation each: paired differences of accuracy with a
bootstrap interval and McNemar's exact test, and the words a page says of an interval.

Every comparison of accuracy in the book is *paired*: two models scored on the same photos
are right or wrong photo by photo, so the difference is resampled with its pair
(:func:`paired`). A verdict word follows only from an interval: "higher", "faster" or "ahead"
where it excludes no change, else the level form (:func:`word`, :func:`speed_word`,
:func:`tally`). Timing ratios get their intervals in the harness
(:func:`tomato.harness.timing.bootstrap_ratio`), where they are recorded.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["BOOTSTRAP", "EQUAL_FLOPS", "bootstrap_interval", "paired", "word", "speed_word", "tally"]

#: Bootstrap resamples behind every interval of a paired difference.
BOOTSTRAP = 2000

#: Two variants are "at equal FLOPs" when their GFLOPs differ by at most this fraction.
EQUAL_FLOPS = 0.05


def bootstrap_interval(d: np.ndarray, seed: int = 0, n_boot: int = BOOTSTRAP) -> tuple[float, float]:
    """95% paired bootstrap interval of ``mean(d)``: d: (N,) per-photo differences, photos
    resampled with replacement."""
    rng = np.random.default_rng(seed)
    boots = np.asarray(d)[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    low, high = np.percentile(boots, [2.5, 97.5])
    return float(low), float(high)


def paired(base: np.ndarray, other: np.ndarray, seed: int = 0, n_boot: int = BOOTSTRAP) -> dict[str, float]:
    """Paired difference of two 0/1 correctness vectors of the same photos, in points.

    base, other: (N,) bool -> ``{"diff", "low", "high", "p", "b", "c"}``: mean difference
    (other - base) x 100, its 95% paired bootstrap interval, the exact McNemar p-value and
    the discordant counts (b: only base right, c: only other right).
    """
    from scipy.stats import binomtest

    base, other = np.asarray(base, bool), np.asarray(other, bool)
    d = other.astype(np.int8) - base.astype(np.int8)
    low, high = (100 * v for v in bootstrap_interval(d, seed, n_boot))
    b, c = int((base & ~other).sum()), int((~base & other).sum())
    p = binomtest(b, b + c, 0.5).pvalue if b + c else 1.0
    return {"diff": float(d.mean() * 100), "low": float(low), "high": float(high), "p": float(p), "b": b, "c": c}


def _side(low: float, high: float, at: float = 0.0) -> int:
    """+1 when the interval [low, high] lies above ``at``, -1 below it, 0 when it holds it."""
    return 1 if low > at else -1 if high < at else 0


def word(low: float, high: float, words: tuple[str, str, str] = ("higher", "lower", "within the noise")) -> str:
    """The verdict on a difference from its 95% interval: ``words`` = (above zero, below
    zero, holds zero), e.g. ("ahead of", "behind", "level with")."""
    return words[{1: 0, -1: 1, 0: 2}[_side(low, high)]]


def speed_word(speedup: float, low: float, high: float) -> str:
    """The verdict on a speed-up (unpatched time / variant time, above 1: faster) and its
    95% interval: "faster" or "slower" only where the interval excludes 1."""
    side = _side(low, high, 1.0)
    if side:
        return "faster" if side > 0 else "slower"
    return "not faster" if speedup <= 1 else "not measurably faster"


def tally(pairs: Any) -> str:
    """Paired differences in words, from their 95% intervals (``low``, ``high``; a table or
    a list of dicts): "behind in 4 of 6 pairs, ahead in none, level within the noise in 2".
    The larger side comes first; a count of zero reads "none"."""
    rows = pairs.to_dict("records") if hasattr(pairs, "to_dict") else list(pairs)
    sides = [_side(r["low"], r["high"]) for r in rows]
    ahead, behind, n = sides.count(1), sides.count(-1), len(rows)
    level = n - ahead - behind

    def count(k: int) -> str:
        return str(k) if k else "none"

    if n and level == n:
        return f"level within the noise in {'the one pair' if n == 1 else f'all {n} pairs'}"
    first, second = (("behind", behind), ("ahead", ahead)) if behind > ahead else (("ahead", ahead), ("behind", behind))
    return (f"{first[0]} in {count(first[1])} of {n} pair{'s' if n != 1 else ''}, {second[0]} in {count(second[1])}, "
            f"level within the noise in {count(level)}")

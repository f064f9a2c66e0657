"""Point labels that overlap nothing (figures.place_labels) and warnings a page says once
in full (tables.timing_noise, latency.load_warning)."""
from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.text import Annotation, Text  # noqa: E402

from tomato.book import figures, tables  # noqa: E402


def _labels(ax) -> list[Text]:
    return [c for c in ax.get_children() if isinstance(c, Annotation)]


def test_place_labels_leaves_no_two_labels_overlapping():
    fig, ax = plt.subplots(figsize=(5, 3.5))
    # Ten points close together on one line, as a sweep whose variants all keep 100% agreement.
    items = [(0.80 + 0.02 * k, 100.0, f"keep=0.{k}", "black") for k in range(10)]
    ax.plot([x for x, *_ in items], [y for _, y, *_ in items], "o")
    ax.set_ylim(70, 101)
    fig.tight_layout()
    crowded = figures.place_labels(ax, items)
    renderer = fig.canvas.get_renderer()
    fig.canvas.draw()
    boxes = [Text.get_window_extent(t, renderer) for t in _labels(ax)]
    assert len(boxes) == 10 and crowded == 0
    assert not [(a, b) for a, b in itertools.combinations(boxes, 2) if a.overlaps(b)]
    frame = ax.get_window_extent(renderer)
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1 for b in boxes)
    plt.close(fig)


def test_a_page_says_each_warning_once_in_full():
    from tomato.book import latency

    said: set[str] = set()
    noisy = pd.DataFrame({"median_s": [1.0, 0.8], "iqr_s": [0.05, 0.4], "speedup_low": 0.9, "speedup_high": 1.1})
    full, short = (tables.timing_noise(noisy, said=said) for _ in range(2))
    assert "interval excludes 1" in full and short.startswith("> **Spread of single rounds:** up to 50% of the median")
    busy = {"machine": {"load_average_1_5_15_min": [3.0, 2.0, 1.0], "cpu_count": 2}}
    assert "Warning: the machine was overloaded" in latency.load_warning(busy, said)
    assert latency.load_warning(busy, said).startswith("**Overloaded machine** (load 3.0, 2.0, 1.0 with 2 CPU cores)")
    assert "Warning" in latency.load_warning(busy) and "Warning" in latency.load_warning(busy)  # no page: in full

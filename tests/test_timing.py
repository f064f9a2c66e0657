from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
import torch

from tomato.harness import timing
from tomato.harness.timing import (
    NOT_A_JETSON,
    TimingStats,
    compare,
    device_sync,
    jetson_info,
    machine_info,
    measure,
    nvtx_range,
    paper_protocol,
    ratios,
)


def fake_clock(durations: Iterable[float], start: float = 100.0) -> Callable[[], float]:
    """A clock that, read twice per run, brackets each run with the given duration."""
    ticks: list[float] = []
    t = start
    for d in durations:
        ticks += [t, t + d]
        t += d + 1000.0  # big gaps between runs: only start/stop pairs may matter
    it = iter(ticks)
    return lambda: next(it)


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def test_stats_exact_values() -> None:
    s = TimingStats([4.0, 1.0, 3.0, 2.0, 10.0])
    assert s.n == 5
    assert s.median == 3.0
    assert s.mean == 4.0
    assert s.min == 1.0
    # numpy linear percentiles of [1,2,3,4,10]: q1 at position 1 -> 2, q3 at 3 -> 4
    assert s.q1 == 2.0
    assert s.q3 == 4.0
    assert s.iqr == 2.0
    d = s.to_dict()
    assert d["median"] == 3.0 and d["times"] == [4.0, 1.0, 3.0, 2.0, 10.0]
    json.dumps(d)


def test_stats_interpolated_quartiles() -> None:
    s = TimingStats([1.0, 2.0, 3.0, 4.0])
    assert s.median == 2.5
    assert s.q1 == pytest.approx(1.75)
    assert s.q3 == pytest.approx(3.25)
    assert s.iqr == pytest.approx(1.5)


def test_empty_stats_raise() -> None:
    with pytest.raises(ValueError):
        TimingStats([]).median


def test_measure_uses_clock_and_skips_warmup() -> None:
    fn = Counter()
    durations = [0.5, 0.1, 0.3, 0.2, 0.4]
    stats = measure(fn, runs=5, warmup=3, clock=fake_clock(durations))
    assert fn.calls == 8  # 3 warm-up + 5 timed
    assert stats.times == pytest.approx(durations)
    assert stats.median == pytest.approx(0.3)
    assert stats.mean == pytest.approx(0.3)
    assert stats.iqr == pytest.approx(0.4 - 0.2)


def test_measure_warmup_calls_are_not_timed() -> None:
    clock_reads = Counter()
    fn_calls: list[int] = []  # clock reads seen when fn runs

    def clock() -> float:
        clock_reads()
        return float(clock_reads.calls)

    def fn() -> None:
        fn_calls.append(clock_reads.calls)

    measure(fn, runs=2, warmup=4, clock=clock)
    # Warm-up calls happen before any clock read; each timed call after exactly one read.
    assert fn_calls == [0, 0, 0, 0, 1, 3]
    assert clock_reads.calls == 4


def test_measure_syncs_around_each_run() -> None:
    events: list[str] = []
    measure(
        lambda: events.append("fn"),
        runs=2,
        warmup=0,
        clock=lambda: events.append("clock") or 0.0,
        sync=lambda: events.append("sync"),
    )
    run = ["sync", "clock", "fn", "sync", "clock"]
    assert events[-10:] == run * 2


def test_measure_rejects_bad_args() -> None:
    with pytest.raises(ValueError):
        measure(lambda: None, runs=0)
    with pytest.raises(ValueError):
        measure(lambda: None, warmup=-1)


def test_paper_protocol_is_mean_of_ten_without_warmup() -> None:
    fn = Counter()
    durations = [float(i) for i in range(1, 11)]  # 1..10, mean 5.5
    assert paper_protocol(fn, clock=fake_clock(durations)) == pytest.approx(5.5)
    assert fn.calls == 10


def test_compare_interleaves_round_robin_and_ratios() -> None:
    order: list[str] = []
    fns = {name: (lambda name=name: order.append(name)) for name in ("a", "b", "c")}
    # a: 2s, b: 1s, c: 4s on every run, interleaved a b c a b c ...
    clock = fake_clock([2.0, 1.0, 4.0] * 3)
    stats = compare(fns, runs=3, warmup=2, clock=clock)
    assert order == ["a", "b", "c"] * 5  # 2 warm-up rounds + 3 timed rounds
    assert list(stats) == ["a", "b", "c"]
    assert stats["a"].times == [2.0] * 3 and stats["c"].median == 4.0
    r = ratios(stats, "a")
    assert r == {"a": 1.0, "b": 0.5, "c": 2.0}
    with pytest.raises(KeyError):
        ratios(stats, "missing")


def test_compare_sequential_when_not_interleaved() -> None:
    order: list[str] = []
    fns = {name: (lambda name=name: order.append(name)) for name in ("a", "b")}
    compare(fns, runs=2, warmup=1, clock=fake_clock([1.0] * 4), interleave=False)
    assert order == ["a"] * 3 + ["b"] * 3


def test_device_sync_cpu_is_noop() -> None:
    sync = device_sync("cpu")
    assert sync() is None
    assert device_sync(torch.device("cpu"))() is None
    assert device_sync(None)() is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_sync_cuda() -> None:  # pragma: no cover - only with a GPU
    device_sync("cuda")()
    with nvtx_range("test"):
        torch.ones(2, device="cuda").sum()


def test_nvtx_range_noop_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def boom(*_: object) -> None:
        raise AssertionError("NVTX must not be touched without CUDA")

    monkeypatch.setattr(torch.cuda.nvtx, "range_push", boom)
    monkeypatch.setattr(torch.cuda.nvtx, "range_pop", boom)
    with nvtx_range("region"):
        x = 1 + 1
    assert x == 2
    with pytest.raises(RuntimeError):  # exceptions pass through untouched
        with nvtx_range("region"):
            raise RuntimeError("inner")


def test_nvtx_range_pushes_and_pops_when_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda.nvtx, "range_push", lambda name: calls.append(("push", name)))
    monkeypatch.setattr(torch.cuda.nvtx, "range_pop", lambda: calls.append(("pop",)))
    with pytest.raises(ValueError):
        with nvtx_range("deit"):
            raise ValueError
    assert calls == [("push", "deit"), ("pop",)]


def test_jetson_info_absent(tmp_path: Path) -> None:
    info = jetson_info(
        model_path=tmp_path / "model",
        release_path=tmp_path / "nv_tegra_release",
        nvpmodel=str(tmp_path / "no-such-nvpmodel"),
    )
    assert info["board_model"] == NOT_A_JETSON
    assert info["l4t_release"] == NOT_A_JETSON
    assert "absent" in info["power_mode"]


def test_jetson_info_present(tmp_path: Path) -> None:
    (tmp_path / "model").write_bytes(b"NVIDIA Jetson Nano Developer Kit\x00")
    (tmp_path / "rel").write_text(
        "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64, "
        "DATE: Sat Feb 19 17:05:08 UTC 2022\n"
    )
    fake = tmp_path / "nvpmodel"
    fake.write_text("#!/bin/sh\necho 'NV Power Mode: MAXN'\necho 0\n")
    fake.chmod(0o755)
    info = jetson_info(model_path=tmp_path / "model", release_path=tmp_path / "rel", nvpmodel=str(fake))
    assert info["board_model"] == "NVIDIA Jetson Nano Developer Kit"
    assert info["l4t_release"] == "R32.7.1"
    assert info["power_mode"] == "NV Power Mode: MAXN | 0"


def test_machine_info_fields() -> None:
    info = machine_info()
    for key in ("python", "platform", "cpu_model", "cpu_count", "torch_threads", "torch", "timm"):
        assert info[key] not in (None, "")
    for key in ("board_model", "l4t_release", "power_mode", "cuda_device"):
        assert key in info
    json.dumps(info)
    if not Path("/etc/nv_tegra_release").exists():
        assert info["l4t_release"] == NOT_A_JETSON
        assert info["board_model"] in (NOT_A_JETSON,) or "Jetson" not in info["board_model"]
        assert "absent" in info["power_mode"] or "unknown" in info["power_mode"]


def test_module_docstring_documents_nsys() -> None:
    assert "nsys profile -t cuda,nvtx" in (timing.__doc__ or "")
    assert np.isfinite(TimingStats([1.0]).iqr)

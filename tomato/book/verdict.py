"""The verdict of a build: what the recorded runs establish about ToMato, what they
cannot, and the one command that settles each open point on a machine that can.

:func:`verdict_markdown` reads ``data/results`` (the Table-1 run, the faithful-vs-parallel
agreement study, the merge-step benchmark) and writes every number from those records;
nothing here is typed prose about a run. The reproduction page shows it whole; the
introduction opens with its short form (:func:`tomato.book.miniature.answer_box`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..harness import speed, variants
from ..harness.fidelity import degenerate_reasons
from . import paper
from .latency import recorded_timings
from .measures import prediction_agreement, tokens_cut_range
from .miniature import speed_word
from .merge_cost import BenchRecord, bench_records, merge_table, paper_mode, pct
from .runs import RecordedRun, pick_table1_run, recorded_runs, records, repo_path
from .notes import stage, trained_here
from .tables import machine_short

#: The commands that settle what a build without pretrained weights or a Jetson cannot.
ACCURACY_COMMAND = ("python -m tomato sweep --data /data/imagenet-mini/val --checkpoint deit_base_patch16_224.pth "
                    "--variants deit tome:r=2 tomato:sim=1e-7 --out data/results/mini-table1")
JETSON_COMMAND = ("python -m tomato time --protocol paper --threads 4 --checkpoint deit_base_patch16_224.pth "
                  "--variants deit tome:r=2 tomato:sim=1e-7 --out data/results/jetson-paper.json")
FIDELITY_COMMAND = ("python -m tomato fidelity --data /data/imagenet-mini/val --checkpoint deit_base_patch16_224.pth "
                    "--out data/results/fidelity_mini_deit-base.json")


def _parallel_exactness(results: Path) -> str | None:
    """'the parallel visit gave the faithful groups on k of n ...' from an agreement study."""
    found = records("agreement", results)
    if not found:
        return None
    path, rows = found[0][0], found[0][1]["rows"]
    same = sum(bool(r.get("same_directed")) for r in rows)
    images = len({r.get("index") for r in rows})
    settings = sorted({str(r.get("setting")) for r in rows})
    return (f"the parallel visit (rule `directed`) gave exactly the faithful visit's groups in {same} of "
            f"{len(rows)} cases ({images} photos × {', '.join(settings)}; `{path.name}`)")


def _merge_cost(records: Sequence[BenchRecord]) -> str | None:
    """The merge step against a whole forward at batch 1 and the paper's ``sim=1e-7``, one
    clause per benchmark record (the same reader as the merge-cost page). The sentence
    names that mode (as the first record's rows spell it), and only rows of that mode are
    read, whatever other ``sim=`` modes a record holds."""
    table = merge_table(records)
    table = table[table["batch"] == 1].dropna(subset=["median_ms"])
    mode = paper_mode(dict.fromkeys(table["mode"]))
    if mode is None:
        return None
    sim = table[table["mode"].map(lambda m: paper_mode([m]) is not None)]
    parts = []
    for rec in records:
        by = {r["method"]: r for _, r in sim[sim["record"] == rec.path.name].iterrows()}
        if {"faithful", "parallel"} <= set(by):
            f, p = by["faithful"], by["parallel"]
            parts.append(f"{f['median_ms']:.1f} and {p['median_ms']:.1f} ms, {pct(f['share'])} and "
                         f"{pct(p['share'])} of a {f['forward_ms']:.3g} ms forward on {rec.label} "
                         f"(`{rec.path.name}`)")
    if not parts:
        return None
    return (f"the merge step at {mode} (median, batch 1) costs, with the faithful visit and then "
            "the parallel one, " + "; ".join(parts))


def _counts(ops: int, syncs: int) -> str:
    """'102 ops, 1 host sync'."""
    return f"{ops:,} op{'' if ops == 1 else 's'}, {syncs:,} host sync{'' if syncs == 1 else 's'}"


def _dispatch(records: Sequence[BenchRecord]) -> str | None:
    """Aten ops and host syncs of the merge step at batch 1, from the first benchmark record
    that counted them; says whether the other records counted the same."""
    wanted = (("parallel", "sim="), ("parallel", "tokens="), ("faithful", "sim="), ("reference-style loop", "sim="))

    def counted(rec: BenchRecord) -> list[tuple[str, Any, Any]]:
        t = merge_table([rec]).dropna(subset=["ops"])
        t = t[t["batch"] == 1]
        return [(f"{r['method']}, {r['mode']}", r["ops"], r["syncs"]) for method, prefix in wanted
                for _, r in t[(t["method"] == method) & t["mode"].str.startswith(prefix)].head(1).iterrows()]

    found = [(rec, c) for rec, c in ((rec, counted(rec)) for rec in records) if c]
    if not found:
        return None
    rec, first = found[0]
    same = sum(c == first for _, c in found)
    where = (f"the same in all {same} records" if same == len(found) > 1 else
             f"the same in {same} of {len(found)} records" if len(found) > 1 else f"on {rec.label}")
    text = (f"the merge step dispatches (batch 1, counted with a TorchDispatchMode; {where}) "
            + "; ".join(f"{name}: {_counts(ops, syncs)}" for name, ops, syncs in first)
            + f" (`{rec.path.name}`)")
    # Name what the other records counted differently, so "the same in k of n" is checkable.
    ours = {name: (ops, syncs) for name, ops, syncs in first}
    diffs = [f"{name}: {_counts(ops, syncs)} on {other.label}" for other, c in found[1:] if c != first
             for name, ops, syncs in c if ours.get(name) != (ops, syncs)]
    return text + (f"; differing: {'; '.join(diffs)}" if diffs else "")


#: Variants of a fidelity study, in the order and words of the verdict.
_FIDELITY_NAMES = {"random_groups": "random groups of the same sizes", "random_keep": "k random tokens kept",
                   "first_keep": "the first k tokens kept", "tome": "ToMe at equal tokens"}


def _null_name(variant: str, row: dict) -> str:
    """A fidelity study's comparison in the verdict's words; ToMe says which ``r`` it ran."""
    if variant == "tome" and row.get("tome_r") is not None:  # the r that matched ToMato's tokens
        return f"ToMe r={row['tome_r']} (its mean tokens per block closest to ToMato's)"
    return _FIDELITY_NAMES.get(variant, variant)


def _fidelity(best: tuple[Path, dict] | None) -> list[str]:
    """Output drift against null baselines at the same token budget, and how diverse the
    baseline's predictions are, from the largest fidelity study recorded (``best``, from
    :func:`_best_fidelity`)."""
    if best is None:
        return []
    path, rec = best
    base = rec["baseline"]
    facts = [f"**Is the baseline informative?** The unpatched model predicts {base['distinct']} distinct classes "
             f"over {base['n']} photos (entropy {base['entropy_bits']:.2f} of {base['max_entropy_bits']:.2f} bits; "
             f"one class takes {100 * base['top_share']:.0f}%)"
             + (": **degenerate**, so agreement with it is cheap; read the drift below instead."
                if degenerate_reasons(base) else ".")]
    by_setting: dict[str, dict[str, dict]] = {}
    for row in rec["summary"]:
        by_setting.setdefault(row["setting"], {})[row["variant"]] = row
    by_setting = {s: rows for s, rows in by_setting.items() if "tomato" in rows}
    if len(by_setting) > 1:
        return facts + [_drift_across(path, base["n"], by_setting)]
    for setting, rows in by_setting.items():
        t = rows["tomato"]
        others = "; ".join(f"{_null_name(v, r)} {r['kl_mean']:.2g}" for v, r in rows.items() if v != "tomato")
        reading = "; ".join(f"{_compare(t['kl_mean'], r['kl_mean'])} {_FIDELITY_NAMES.get(v, v)}"
                            for v, r in rows.items() if v != "tomato")
        facts.append(f"**Output drift at {setting}** ({t['tokens_mean']:.1f} tokens): mean KL of the logits from "
                     f"the unpatched model's, ToMato {t['kl_mean']:.2g} nats against {others} "
                     f"(`{path.name}`, {base['n']} photos). ToMato moves the output {reading}.")
    return facts


def _drift_across(path: Path, n: int, by_setting: dict[str, dict[str, dict]]) -> str:
    """One fact for a fidelity study of several settings: each setting's mean KLs in a
    line, then per comparison how ToMato's drift compares at every setting."""
    each = []
    for setting, rows in by_setting.items():
        t = rows["tomato"]
        each.append(f"{setting} ({t['tokens_mean']:.0f} tokens): ToMato {t['kl_mean']:.2g}, "
                    + ", ".join(f"{_null_name(v, r) if v != 'tome' else 'ToMe r=' + str(r.get('tome_r'))} "
                                f"{r['kl_mean']:.2g}" for v, r in rows.items() if v != "tomato"))
    reading = []
    for v in dict.fromkeys(v for rows in by_setting.values() for v in rows if v != "tomato"):
        ratios = [rows["tomato"]["kl_mean"] / rows[v]["kl_mean"] for rows in by_setting.values()
                  if v in rows and rows[v]["kl_mean"] > 0 and rows["tomato"]["kl_mean"] > 0]
        if ratios:
            reading.append(f"{_times(ratios)} {_FIDELITY_NAMES.get(v, v)}")
    return (f"**Output drift** (mean KL of the logits from the unpatched model's, nats, at the same tokens per "
            f"photo; `{path.name}`, {n} photos): " + "; ".join(each) + ". Across the "
            f"{len(by_setting)} settings ToMato moves the output " + "; ".join(reading) + ".")


def _times(ratios: Sequence[float]) -> str:
    """'4–10× less than', '4–25× more than' or '0.8–1.2× as much as' for ToMato's KL over
    another's at several settings."""
    def span(lo: float, hi: float) -> str:
        a, b = (f"{x:.0f}" if x >= 2 else f"{x:.1f}" for x in (lo, hi))
        return a if a == b else f"{a}–{b}"
    if max(ratios) < 1:
        return f"{span(1 / max(ratios), 1 / min(ratios))}× less than"
    if min(ratios) > 1:
        return f"{span(min(ratios), max(ratios))}× more than"
    return f"{span(min(ratios), max(ratios))}× as much as"


def _compare(ours: float, other: float, band: float = 1.25) -> str:
    """'less than', 'about as much as' or 'more than' (by a factor ``band``), and how many
    times when it is more than twice either way."""
    if other <= 0 or ours <= 0:
        return "about as much as" if ours == other else ("less than" if ours < other else "more than")
    ratio = ours / other
    if ratio > band:
        return f"{ratio:.0f}× more than" if ratio >= 2 else "more than"
    if ratio < 1 / band:
        return f"{1 / ratio:.0f}× less than" if ratio <= 0.5 else "less than"
    return "about as much as"


def _other_machines(results: Path) -> list[dict[str, Any]]:
    """ToMato sim=1e-7's speed-up over its unpatched model at batch 1 in every robust-protocol
    timing record (``python -m tomato time --out``): machine and model, speed-up and its interval."""
    from .pictures import model_title

    out = []
    for path, record in recorded_timings(results, "robust"):
        for r in speed.at_batch(record.get("rows") or []):
            if variants.canonical(str(r.get("variant"))) == paper.TOMATO:
                config = record.get("config") or {}
                prov = {**(record.get("provenance") or {}), "device": config.get("device", "")}
                machine = machine_short(prov) + (f", {config['threads']} threads"
                                                 if config.get("device") == "cpu" and config.get("threads") else "")
                commit = str(((record.get("provenance") or {}).get("git") or {}).get("commit") or "")[:7]
                model = model_title(str(config.get("model", "deit_base_patch16_224")), bool(config.get("pretrained")))
                machine += f", {model} (`{path.name}`" + (f", code at {commit}" if commit else "") + ")"
                out.append({"file": path.name, "machine": machine, "speedup": float(r["speedup"]),
                            "low": r.get("speedup_low"), "high": r.get("speedup_high")})
    return out


def _speed(speedup: float, low: Any, high: Any) -> str:
    """'×1.04 (0.98–1.11), not resolved' / '... faster' / '... slower' (interval vs 1)."""
    if low is None or high is None:
        return f"×{speedup:.2f} (no interval recorded)"
    word = speed_word(speedup, float(low), float(high))
    word = word if word in ("faster", "slower") else "within the noise"
    return f"×{speedup:.2f} ({float(low):.2f}–{float(high):.2f}), {word}"


def _model(run: RecordedRun | None) -> str:
    """The short name of ``run``'s model (``DeiT-Ti (distilled)``); DeiT-B when there is no run."""
    from .pictures import model_title

    return model_title(str(run.provenance.get("model") or "deit_base_patch16_224"), True) if run else "DeiT-B"


def _gflops(run: RecordedRun) -> dict[str, float]:
    """GFLOPs per image of each variant as the run recorded them, with its own model's size."""
    rows = run.rows()
    if "gflops" not in rows:
        return {}
    return {variants.canonical(s): float(g) for s, g in zip(rows["variant"], rows["gflops"]) if g == g}


def _run_facts(run: RecordedRun, diversity_below: bool = False) -> list[str]:
    """Tokens, agreement, FLOPs and latency of ToMato sim=1e-7 in ``run``;
    ``diversity_below``: the verdict says below how diverse the baseline's predictions are."""
    facts = []
    n = run.provenance.get("n_images")
    vr = run.variants.get(paper.TOMATO)
    if vr is not None and vr.has_predictions:
        preds = vr.predictions()
        lo, hi, mean = tokens_cut_range(preds)
        facts.append(f"**Tokens kept.** ToMato sim=1e-7 removed {lo:.1f}–{hi:.1f}% of the patch tokens per photo "
                     f"(mean {mean:.1f}%, {len(preds)} photos of `{run.name}`); the paper reports "
                     f"{paper.TOKEN_CUT_SIM_1E7[0]}–{paper.TOKEN_CUT_SIM_1E7[1]}% with trained weights"
                     + ("; these are an untrained network's counts (random-init weights)." if not run.pretrained
                        else "."))
    g, model = _gflops(run), _model(run)
    if paper.TOMATO in g and paper.BASELINE in g:
        facts.append(f"**FLOPs.** {g[paper.TOMATO]:.2f} GFLOPs per image for ToMato sim=1e-7 against "
                     f"{g[paper.BASELINE]:.2f} for {model} ({100 * (g[paper.TOMATO] / g[paper.BASELINE] - 1):+.1f}%), "
                     "at the mean tokens kept.")
    agree = dict(zip(*(prediction_agreement(run)[c] for c in ("variant", "top1_agreement"))))
    if paper.TOMATO in agree:
        facts.append(f"**Output change.** ToMato sim=1e-7 kept the unpatched model's top-1 on "
                     f"{agree[paper.TOMATO]:.1f}% of the {n} photos (a perturbation measure, which means something "
                     "with any weights but is cheap when the baseline's predictions are degenerate"
                     + ("; see *Is the baseline informative?* below)." if diversity_below else ")."))
    timed = {r.get("variant"): r for r in speed.at_batch(run.timing)}
    rows = [(s, r) for s, r in timed.items() if r.get("speedup") and variants.canonical(s) != paper.BASELINE]
    if rows:
        ci = all(r.get("speedup_low") is not None for _, r in rows)
        parts = [f"{variants.label(s)} ×{float(r['speedup']):.2f}"
                 + (f" ({float(r['speedup_low']):.2f}–{float(r['speedup_high']):.2f})" if ci else "")
                 + (f" at {float(r['tokens_mean']):.0f} tokens after block 0" if r.get("tokens_mean") else "")
                 for s, r in rows]
        n_timed = (run.timing_config or {}).get("images")
        on = f"the {n_timed} timed photos" if n_timed else "the timed photos"
        facts.append(f"**Latency against tokens kept** (speed-up over {model}, median"
                     + (" with its 95% bootstrap interval" if ci else "") + ", batch 1, on "
                     f"{machine_short(run.provenance)}; tokens are those {on} kept): " + "; ".join(parts) + ".")
    return facts


def _best_fidelity(results: Path) -> tuple[Path, dict] | None:
    """The fidelity record with the most photos under ``results``."""
    found = records("fidelity", results)
    return max(found, key=lambda pr: int(pr[1]["baseline"]["n"]), default=None)


def _in_short(run: RecordedRun | None, results: Path, best: tuple[Path, dict] | None) -> str:
    """Three or four plain sentences answering "does ToMato work here?", each from a record
    (``best``: the fidelity study of :func:`_best_fidelity`)."""
    said = ["The merge follows the paper's algorithm and the parallel visit is exact (both checked below)."]
    pretrained, model = bool(run and run.pretrained), _model(run)
    if pretrained:
        from . import miniature

        df = miniature.table(run)
        answer = miniature.short_answer(df, miniature.equal_flops(df, run))
        source = str(run.provenance.get("weights_source"))
        then = stage(source, run.provenance.get("weights_sha256"))
        kind = ("trained here" + (f", {then}" if then else "")) if trained_here(source) else "pretrained"
        said.append(f"On {model} ({kind}), "
                    + (answer if answer else "ToMato's accuracy is measured")
                    + " ([Table 1 in miniature](10_trained.ipynb)).")
    else:
        said.append(f"Whether ToMato keeps {model}'s accuracy cannot be told from this build: its weights are "
                    "random-init, not trained.")
    speeds = []
    if run is not None:
        r = next((r for r in speed.at_batch(run.timing) if variants.canonical(str(r.get("variant"))) == paper.TOMATO
                  and r.get("speedup")), None)
        if r is not None:
            speeds.append(f"{machine_short(run.provenance)}, {model}: "
                          f"{_speed(float(r['speedup']), r.get('speedup_low'), r.get('speedup_high'))}")
    speeds += [f"{m['machine']}: {_speed(m['speedup'], m['low'], m['high'])}" for m in _other_machines(results)]
    if speeds:
        g = _gflops(run) if run is not None else {}
        flops = (f", which needs {100 * (1 - g[paper.TOMATO] / g[paper.BASELINE]):.1f}% fewer FLOPs than {model},"
                 if paper.TOMATO in g and paper.BASELINE in g else "")
        said.append(f"ToMato sim=1e-7{flops} ran at these speed-ups over the unpatched model at batch 1 "
                    "(95% intervals): " + "; ".join(speeds) + ".")
    if best is not None:
        rows = {r["variant"]: r for r in best[1]["summary"] if paper_mode([r["setting"]]) is not None}
        if {"tomato", "tome", "random_groups"} <= set(rows):
            t, tm, rg = (rows[k]["kl_mean"] for k in ("tomato", "tome", "random_groups"))
            said.append(f"At the same token count, ToMato sim=1e-7 moves the {'' if pretrained else 'untrained '}"
                        "network's output "
                        f"{_compare(t, tm)} ToMe and {_compare(t, rg)} random groups of its sizes "
                        f"(mean KL {t:.2g}, {tm:.2g} and {rg:.2g} nats).")
    return "**In short.** " + " ".join(said)


def verdict_markdown(results: Path | str = "data/results") -> str:
    """The verdict as Markdown: a heading, what this build establishes (numbers from the
    records under ``results``), what it cannot, and the commands that settle those."""
    root = results if Path(results).is_absolute() else repo_path(results)
    root = Path(root)
    run = pick_table1_run(recorded_runs(root))
    established = ["**Merge semantics.** The faithful visit is the paper's Algorithms 1–2 (directed test, "
                   "left-right-up-down order) and merging averages each group and keeps its size for "
                   "proportional attention; the test suite checks both on grids worked out by hand."]
    exact = _parallel_exactness(root)
    if exact:
        established.append(f"**Parallel visit.** Exact by proof and in the record: {exact}.")
    best = _best_fidelity(root)  # read once: the summary and the drift lines both use it
    fidelity = _fidelity(best)
    if run is not None:
        established += _run_facts(run, diversity_below=bool(fidelity))
    established += fidelity
    benches = bench_records(root)
    for what, fact in (("Cost of the merge", _merge_cost(benches)), ("Kernels of the merge", _dispatch(benches))):
        if fact:
            established.append(f"**{what}.** {fact[0].upper()}{fact[1:]}.")
    pretrained = bool(run and run.pretrained)
    open_points = []
    if not pretrained:
        open_points.append(f"**Accuracy** (Table 1's top-1/top-5, Figure 3's accuracy axis) needs pretrained DeiT-B "
                           f"weights and ImageNet-Mini: `{ACCURACY_COMMAND}`.")
    jetson = run is not None and "jetson" in machine_short(run.provenance).lower()
    if not jetson:
        open_points.append(f"**Jetson latency** (Table 1's seconds, the paper's −22.19% / −6.06%) needs the board: "
                           f"`{JETSON_COMMAND}`.")
    if not pretrained:
        open_points.append(f"**Fidelity with trained weights** (whether ToMato's groups still beat the null "
                           f"baselines, and how it compares with ToMe at equal tokens): `{FIDELITY_COMMAND}`.")
    lines = ["## Verdict of this build", "", _in_short(run, root, best), "", "**What the recorded runs establish:**", ""]
    lines += [f"- {t}" for t in established]
    if open_points:
        lines += ["", "**What they cannot, and the command that settles it on a machine that can:**", ""]
        lines += [f"- {t}" for t in open_points]
    return "\n".join(lines) + "\n"

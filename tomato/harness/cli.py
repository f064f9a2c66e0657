"""Command line: ``python -m tomato {eval,time,sweep,bench} ...`` (``--help`` on each).

Examples::

    python -m tomato eval --variant tomato:sim=1e-7 --data /data/imagenet-mini/val \\
        --checkpoint deit_base_patch16_224.pth --out data/results/tomato-sim1e-7
    python -m tomato time --variants deit tome:r=2 tomato:sim=1e-7 --batch-sizes 1 8 32
    python -m tomato sweep --data smoke --random-weights --out data/results/sweep-smoke
    python -m tomato agree --data smoke --random-weights --out data/results/agree.json
    python -m tomato bench
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

from . import agreement, bench, data, models, provenance, speed, sweep
from .evaluate import evaluate
from .results import atomic_write_text


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=models.DEFAULT_MODEL, help="timm model name (default: %(default)s)")
    p.add_argument("--checkpoint", default=None, help="local .pth/.safetensors weights (offline machines)")
    p.add_argument("--random-weights", action="store_true",
                   help="fall back to seeded random-init weights when no pretrained weights can be "
                        "had: a smoke run, its numbers are NOT accuracy")
    p.add_argument("--seed", type=int, default=0, help="seed of the random-init fallback")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--data", default="smoke",
                   help="'smoke' (embedded photos) or an ImageNet folder val/<wnid>/*.JPEG")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _load(args: argparse.Namespace):
    model, weights = models.load(args.model, checkpoint=args.checkpoint, random_fallback=args.random_weights,
                                 seed=args.seed, device=args.device)
    samples = data.resolve_data(args.data)
    label = "smoke" if args.data in (None, "smoke") else str(Path(args.data).resolve())
    return model, weights, samples, label


def _warn_random(weights: models.WeightsInfo) -> None:
    if not weights.pretrained:
        print(f"NOTE: weights are {weights.source}: a smoke run, these numbers are NOT accuracy.",
              file=sys.stderr)


def cmd_eval(args: argparse.Namespace) -> int:
    model, weights, samples, label = _load(args)
    _warn_random(weights)
    summary = evaluate(model, weights, args.variant, samples, args.out, data_label=label,
                       batch_size=args.batch_size, num_workers=args.workers, device=args.device,
                       max_batches=args.max_batches, progress=not args.quiet)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_time(args: argparse.Namespace) -> int:
    model, weights, samples, label = _load(args)
    _warn_random(weights)
    images = sweep.timing_images(samples, model)
    rows = speed.measure_variants(model, args.variants, images, batch_sizes=args.batch_sizes,
                                  runs=args.runs, warmup=args.warmup, device=args.device,
                                  progress=not args.quiet)
    record = {"rows": rows, "provenance": provenance.collect(
        model=args.model, weights_source=weights.source, weights_sha256=weights.sha256,
        data=label, variants=args.variants, runs=args.runs, warmup=args.warmup)}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(args.out), json.dumps(provenance.jsonable(record), indent=2) + "\n")
    print(f"{'variant':36s} {'batch':>5s} {'paper mean s':>12s} {'median s':>9s} {'IQR s':>8s} "
          f"{'img/s':>8s} {'speed-up':>8s} {'ideal':>6s} {'tokens':>7s}")
    for r in rows:
        paper = "" if r["paper_mean_s"] is None else f"{r['paper_mean_s']:.4f}"
        print(f"{r['variant']:36s} {r['batch_size']:5d} {paper:>12s} {r['median_s']:9.4f} {r['iqr_s']:8.4f} "
              f"{r['throughput_img_s']:8.2f} {r['speedup']:8.3f} {r['ideal_speedup']:6.3f} {r['tokens_mean']:7.1f}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    model, weights, samples, label = _load(args)
    _warn_random(weights)
    rows = sweep.sweep(model, weights, args.variants, samples, args.out, data_label=label,
                       batch_size=args.batch_size, num_workers=args.workers, device=args.device,
                       time_runs=args.runs, time_warmup=args.warmup, progress=not args.quiet)
    for r in rows:
        print(f"{r['variant']:36s} top1={r['top1']!s:>7.7s} tokens={r['tokens_mean']:.1f} "
              f"median={r['median_s']:.4f}s gflops={r['gflops']:.2f}")
    print(f"wrote {Path(args.out) / 'sweep.csv'}")
    return 0


def cmd_agree(args: argparse.Namespace) -> int:
    model, weights, samples, label = _load(args)
    _warn_random(weights)
    rows = agreement.method_agreement(model, samples, sims=args.sims, keep_ratios=args.keep,
                                      metric=args.metric, progress=not args.quiet)
    record = {"rows": rows, "provenance": provenance.collect(
        model=args.model, weights_source=weights.source, weights_sha256=weights.sha256, data=label,
        n_images=len(samples), sims=args.sims, keep_ratios=args.keep, metric=args.metric)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(args.out), json.dumps(provenance.jsonable(record), indent=2) + "\n")
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["setting"], []).append(r)
    for setting, rs in by.items():
        n = len(rs)
        print(f"{setting:18s} images={n} mean ARI either={sum(r['ari_either'] for r in rs) / n:.4f} "
              f"both={sum(r['ari_both'] for r in rs) / n:.4f}  identical partitions: "
              f"either={sum(r['ari_either'] == 1.0 for r in rs) / n:.1%} "
              f"both={sum(r['ari_both'] == 1.0 for r in rs) / n:.1%}")
    print(f"wrote {args.out}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    rows = bench.run(args.model, runs=args.runs, warmup=args.warmup, device=args.device, threads=args.threads)
    info = provenance.collect(model=args.model, weights="random-init:seed=0")
    header = (f"{args.model}, batch 1, {args.device}, torch threads={info['machine'].get('torch_threads')}, "
              f"cpu={info['cpu_model']}, commit={info['git']['commit'][:10]}, {info['date_utc']}")
    print(bench.format_rows(rows, header))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tomato", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("eval", help="top-1/top-5 and tokens of one variant (resumable)")
    _common(p)
    p.add_argument("--variant", default="deit", help="deit | tome:r=2 | tomato:sim=1e-7 | tomato:keep=0.85 ...")
    p.add_argument("--out", required=True, help="run folder (resumed if it holds the same run)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--max-batches", type=int, default=None, help="stop after N batches (resume later)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("time", help="latency/throughput of several variants in one run")
    _common(p)
    p.add_argument("--variants", nargs="+", default=["deit", "tome:r=2", "tomato:sim=1e-7"])
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--out", default=None, help="write rows + provenance to this JSON file")
    p.set_defaults(func=cmd_time)

    p = sub.add_parser("sweep", help="evaluate + time many variants into one tidy CSV")
    _common(p)
    p.add_argument("--variants", nargs="+", default=list(sweep.DEFAULT_VARIANTS))
    p.add_argument("--out", required=True)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("agree", help="faithful vs parallel partitions on real images")
    _common(p)
    p.add_argument("--sims", nargs="*", type=float, default=[1e-7])
    p.add_argument("--keep", nargs="*", type=float, default=[0.85])
    p.add_argument("--metric", default="features", choices=["features", "attention"])
    p.add_argument("--out", required=True, help="JSON file for the rows and provenance")
    p.set_defaults(func=cmd_agree)

    p = sub.add_parser("bench", help="merge-step micro-benchmark vs an unpatched forward")
    p.add_argument("--model", default=models.DEFAULT_MODEL)
    p.add_argument("--device", default="cpu")
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

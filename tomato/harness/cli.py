"""Command line: ``python -m tomato {eval,time,sweep,agree,fidelity,bench,record,train} ...`` (``--help`` on each).

Examples::

    python -m tomato eval --variant tomato:sim=1e-7 --data /data/imagenet-mini/val \\
        --checkpoint deit_base_patch16_224.pth --out data/results/tomato-sim1e-7
    python -m tomato time --variants deit tome:r=2 tomato:sim=1e-7 --batch-sizes 1 8 32
    python -m tomato sweep --data smoke --random-weights --out data/results/sweep-smoke
    python -m tomato agree --data smoke --random-weights --out data/results/agree.json
    python -m tomato fidelity --data smoke --random-weights --out data/results/fidelity.json
    python -m tomato bench --batch-sizes 1 8 --out data/results/bench.json
"""
from __future__ import annotations

import argparse
import json
import logging
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from . import agreement, bench, data, fidelity, flops, models, provenance, records, speed, sweep
from .evaluate import evaluate
from .outputs import claim_file
from .preflight import OUT_FILE, OUT_FOLDER, preflight


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help=f"timm model name (default: the checkpoint's model card, else {models.DEFAULT_MODEL})")
    p.add_argument("--checkpoint", default=None,
                   help="local .pth/.safetensors weights, or the short name of a model under data/weights/")
    p.add_argument("--random-weights", action="store_true",
                   help="fall back to seeded random-init weights when no pretrained weights can be "
                        "had: a smoke run, its numbers are NOT accuracy")
    p.add_argument("--seed", type=int, default=0, help="seed of the random-init fallback")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--data", default="smoke",
                   help="'smoke' (embedded photos) or an ImageNet folder val/<wnid>/*.JPEG")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _load(args: argparse.Namespace):
    # The image folder first: scanning it is cheap, loading (or downloading) weights is not.
    samples = data.resolve_data(args.data)
    model, weights = models.load(args.model, checkpoint=args.checkpoint, random_fallback=args.random_weights,
                                 seed=args.seed, device=args.device)
    samples = data.label_samples(samples, weights.classes, model.num_classes, model=weights.model)
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
    if summary.get("n_retry"):
        print(f"error: {summary['n_retry']} image(s) could not be read now (listed with the reason in "
              f"{Path(args.out) / 'bad_images.csv'}); the run is not complete: fix access and rerun "
              f"this command to retry them", file=sys.stderr)
        return 3
    return 0


def cmd_time(args: argparse.Namespace) -> int:
    started = provenance.start()  # record the code that runs, not the checkout at the end
    model, weights, samples, label = _load(args)
    _warn_random(weights)
    # One thread setting for the whole command, so the record's machine says what was used.
    with speed.torch_threads(args.threads) as used:
        config = speed.run_config(args.protocol, weights, label, args.variants, args.device, used)
        if args.protocol == "paper":
            image, path = speed.paper_image(samples, args.image, model)
            config.update(image=path, image_index=args.image, forwards=args.forwards, batch_size=1, warmup=0)
            rows = speed.paper_protocol(model, args.variants, image, forwards=args.forwards, device=args.device,
                                        progress=not args.quiet)
            summary = speed.paper_summary(rows)
        else:
            images = sweep.timing_images(samples, model, count=args.images)
            config.update(images=int(images.shape[0]), batch_sizes=args.batch_sizes, runs=args.runs,
                          warmup=args.warmup, budget_s=args.budget_s)
            rows = speed.measure_variants(model, args.variants, images, batch_sizes=args.batch_sizes,
                                          runs=args.runs, warmup=args.warmup, budget_s=args.budget_s,
                                          device=args.device, progress=not args.quiet)
            summary = []
        record = {"config": config, "rows": rows, "summary": summary,
                  "provenance": provenance.collect(started, **config)}
    if args.out:
        records.write("timing", args.out, record)
    print(speed.describe(config))
    if args.protocol == "paper":
        specs = [r["variant"] for r in summary]
        print(f"{'forward':>7s} " + " ".join(f"{s[:22]:>22s}" for s in specs) + "   (seconds)")
        for i in range(args.forwards):
            cells = [r["seconds"] for r in rows if r["forward"] == i]
            print(f"{i:7d} " + " ".join(f"{t:22.4f}" for t in cells))
        print(f"{'variant':36s} {'mean s':>8s} {'mean 1-':>8s} {'median s':>9s} {'sd s':>7s} {'min-max s':>15s} "
              f"{'merge ms':>9s} {'merge %':>8s} {'tokens':>6s}")
        for r in summary:
            print(f"{r['variant']:36s} {r['mean_s']:8.4f} {r['mean_after_first_s']:8.4f} {r['median_s']:9.4f} "
                  f"{r['sd_s']:7.4f} {r['min_s']:7.4f}-{r['max_s']:7.4f} {r['merge_ms']:9.2f} "
                  f"{100 * r['merge_share']:8.2f} {r['tokens']:6d}")
    else:
        print(f"{'variant':36s} {'batch':>5s} {'median s':>9s} {'IQR s':>8s} {'runs':>5s} {'img/s':>8s} "
              f"{'speed-up [95% CI]':>22s} {'ideal':>6s} {'tokens':>7s}")
        for r in rows:
            ci = f"{r['speedup']:.3f} [{r['speedup_low']:.3f}, {r['speedup_high']:.3f}]"
            print(f"{r['variant']:36s} {r['batch_size']:5d} {r['median_s']:9.4f} {r['iqr_s']:8.4f} {r['runs']:5d} "
                  f"{r['throughput_img_s']:8.2f} {ci:>22s} {r['ideal_speedup']:6.3f} {r['tokens_mean']:7.1f}")
    if args.out:
        print(f"wrote {args.out}")
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
    started = provenance.start()
    model, weights, samples, label = _load(args)
    _warn_random(weights)
    rows = agreement.method_agreement(model, samples, sims=args.sims, keep_ratios=args.keep,
                                      metric=args.metric, progress=not args.quiet)
    if not rows:
        raise ValueError(f"none of the {len(samples)} photos of --data {args.data} could be read; nothing was written")
    records.write("agreement", args.out, agreement.record(rows, started, weights, label, len(samples), args.sims,
                                                          args.keep, args.metric))
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


def cmd_fidelity(args: argparse.Namespace) -> int:
    model, weights, all_samples, label = _load(args)
    _warn_random(weights)
    samples = fidelity.spread(all_samples, args.limit)
    if len(samples) < len(all_samples):
        label += f" (every {len(all_samples) // len(samples)}th photo by sorted path, {len(samples)} photos)"
    t0 = time.perf_counter()
    rec = fidelity.record(weights.model, model, weights.source, weights.sha256, samples, label, args.sims,
                          args.keep, args.null_seed, args.batch_size, not args.no_tome, progress=not args.quiet)
    rec["provenance"]["seconds"] = round(time.perf_counter() - t0, 1)
    records.write("fidelity", args.out, rec)
    print(fidelity.format_summary(rec))
    print(f"wrote {args.out} in {rec['provenance']['seconds']} s")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    started = provenance.start()
    name = args.model if args.model or args.checkpoint else models.DEFAULT_MODEL
    model, weights = models.load(name, checkpoint=args.checkpoint, pretrained=False, seed=0, device=args.device)
    patches = flops.input_patches(model)
    if args.tokens > patches:
        raise ValueError(f"--tokens {args.tokens}: {weights.model} has {patches} patch tokens at its input size; "
                         f"keep at most {patches}")
    if args.payoff:
        return _payoff(args, model, weights, started)
    common = dict(runs=args.runs, warmup=args.warmup, device=args.device, threads=args.threads,
                  batch_sizes=args.batch_sizes, tokens=args.tokens, model=model, progress=not args.quiet)
    if args.static:
        rows = bench.static_run(weights.model, treatments=args.treatments, **common)
    else:
        rows = bench.run(weights.model, **common)
    info = provenance.collect(started, model=weights.model, weights=weights.source)
    batches = ", ".join(str(b) for b in args.batch_sizes)
    header = (f"{weights.model} ({weights.source}), batch {batches}, {args.device}, "
              f"torch threads={info['machine'].get('torch_threads')}, "
              f"cpu={info['cpu_model']}, commit={info['git']['commit'][:10]}, {info['date_utc']}")
    print(bench.format_rows(rows, header))
    if args.out:
        extra = dict(treatments=list(args.treatments)) if args.static else {}
        bench.record(rows, args.out, "static" if args.static else "bench", started=started,
                     model=weights.model, weights=weights.source,
                     weights_sha256=weights.sha256, device=args.device, batch_sizes=list(args.batch_sizes),
                     tokens=args.tokens, runs=args.runs, warmup=args.warmup, threads=args.threads,
                     static=args.static, **extra)
        print(f"wrote {args.out}")
    return 0


def _payoff(args: argparse.Namespace, model: Any, weights: models.WeightsInfo, started: dict[str, Any]) -> int:
    from . import payoff
    from .speed import torch_threads

    with torch_threads(args.threads):
        points = payoff.run(model, args.sims, args.batch_sizes, runs=args.runs, warmup=args.warmup,
                            device=args.device, progress=not args.quiet)
    print(f"{weights.model} ({weights.source}), {args.device}: speed-up = unpatched time / variant time")
    for p in points:
        print(f"batch {p.batch:3d}  sim={p.sim:<8g} cut {p.cut_pct:5.1f}%  padded {p.tokens_padded:5.1f}  "
              f"ToMato x{p.speedup:.3f} [{p.speedup_low:.3f}, {p.speedup_high:.3f}]  "
              f"oracle x{p.oracle_speedup:.3f} [{p.oracle_low:.3f}, {p.oracle_high:.3f}]")
    if args.out:
        payoff.record(points, args.out, started=started, model=weights.model, weights=weights.source,
                      weights_sha256=weights.sha256, pretrained=weights.pretrained, device=args.device,
                      batch_sizes=list(args.batch_sizes), sims=list(args.sims), runs=args.runs,
                      warmup=args.warmup, threads=args.threads, data="smoke", photos=len(data.SMOKE_TABLE))
        print(f"wrote {args.out}")
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from . import record as recording

    model, weights, samples, label = _load(args)
    if not weights.pretrained:
        raise ValueError(f"record describes trained weights, and {weights.source} are seeded random-init: pass "
                         f"--checkpoint (a model under data/weights, or a .pth/.safetensors file)")
    command = " ".join(shlex.quote(a) for a in ["python", "-m", "tomato", *args.argv])
    state = recording.record(model, weights, samples, args.out, data_label=label, plan=args.plan,
                             device=args.device, workers=args.workers, command=command, progress=not args.quiet,
                             say=lambda line: print(line, file=sys.stderr, flush=True))
    print("\n".join(recording.summary_lines(state)))
    print(f"wrote {args.out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from . import recipe as recipes, training

    chosen = recipes.override(recipes.load(args.recipe), phase=args.phase, epochs=args.epochs, lr=args.lr,
                              batch_size=args.batch_size, model=args.model).with_seed(args.seed)
    if args.show_recipe:
        print(recipes.to_toml(chosen), end="")
        return 0
    if args.data is None or args.out is None:
        raise ValueError("train needs --data and --out (or --show-recipe to print the recipe and stop)")
    card = training.train(args.data, args.out, chosen, init=args.init, teacher=args.teacher, threads=args.threads,
                          progress=not args.quiet, device=args.device)
    val = card["val"]
    print(f"val top-1 {val['top1']:.2f}%, top-5 {val['top5']:.2f}% on {val['images']} photos at "
          f"{val['resolution']} px; wrote {Path(args.out) / 'model.safetensors'} and its model card")
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

    p = sub.add_parser("time", help="latency of several variants: our robust protocol or the paper's")
    _common(p)
    p.add_argument("--protocol", choices=["robust", "paper"], default="robust",
                   help="robust: warm-up, interleaved rounds, medians, bootstrap intervals (ours); paper: one "
                        "image, --forwards forwards at batch 1 per variant, no warm-up, NVTX ranges as in the "
                        "authors' profiles (the authors': CPU, 4 threads on a Jetson Nano)")
    p.add_argument("--variants", nargs="+", default=["deit", "tome:r=2", "tomato:sim=1e-7"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's; 4 on a Nano)")
    p.add_argument("--image", type=int, default=0, help="paper: index of the one image in --data")
    p.add_argument("--forwards", type=int, default=speed.PAPER_FORWARDS,
                   help="paper: forwards per variant (default: %(default)s, as the authors)")
    p.add_argument("--images", type=int, default=8, help="robust: images the timed calls rotate through")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1], help="robust: batch sizes")
    p.add_argument("--runs", type=int, default=speed.MIN_RUNS, help="robust: timed rounds, at least")
    p.add_argument("--warmup", type=int, default=5, help="robust: untimed rounds first")
    p.add_argument("--budget-s", type=float, default=None,
                   help="robust: keep timing rounds until this many seconds have passed (after --runs)")
    p.add_argument("--out", default=None, help="write config + rows + provenance to this JSON file")
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

    p = sub.add_parser("fidelity", help="how far merged outputs drift from the unpatched model's, "
                                        "against null baselines and ToMe at equal tokens")
    _common(p)
    p.add_argument("--limit", type=int, default=None, help="at most N images, spread evenly over --data")
    p.add_argument("--sims", nargs="*", type=float, default=[1e-7])
    p.add_argument("--keep", nargs="*", type=float, default=[0.85, 0.7])
    p.add_argument("--null-seed", type=int, default=0, help="seed of the null baselines' generator")
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--no-tome", action="store_true", help="skip ToMe at equal tokens")
    p.add_argument("--out", required=True, help="JSON file for the record (rows, summary, provenance)")
    p.set_defaults(func=cmd_fidelity)

    p = sub.add_parser("record", help="every weights-dependent record the book reads, for one model, into one "
                                      "folder with its manifest (resumable)")
    _common(p)
    p.add_argument("--out", default=None,
                   help="record folder (default: data/results/<name> for --checkpoint <name> under data/weights)")
    p.add_argument("--plan", default="book", choices=["book", "smoke"],
                   help="book: everything the book reads; smoke: a tiny recording for a first try")
    p.add_argument("--workers", type=int, default=2, help="processes decoding the photos (once)")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("train", help="train the book's ViT from scratch (resumable; writes weights + model card)")
    p.add_argument("--data", help="folder with train/<class>/*.JPEG and val/<class>/*.JPEG")
    p.add_argument("--out", help="run folder (resumed if it holds the same run)")
    p.add_argument("--recipe", default="imagenette-cpu",
                   help="a recipe's name (tomato/harness/recipe.py) or a .toml/.yaml recipe file")
    p.add_argument("--show-recipe", action="store_true",
                   help="print the recipe, overrides applied, as a TOML recipe file, and stop")
    p.add_argument("--phase", default=None,
                   help="the phase --epochs/--lr/--batch-size change (default: the first student phase)")
    p.add_argument("--epochs", type=int, default=None, help="override the phase's epochs")
    p.add_argument("--lr", type=float, default=None, help="override the phase's peak learning rate")
    p.add_argument("--batch-size", type=int, default=None, help="override the phase's batch size")
    p.add_argument("--model", default=None, help="override the student model (a timm ViT/DeiT name)")
    p.add_argument("--init", default=None,
                   help="for a recipe that continues another (imagenette-cpu-more): that run's model.safetensors")
    p.add_argument("--teacher", default=None,
                   help="the teacher.safetensors an earlier run trained: the recipe's teacher phase is skipped")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (the run is reproducible per count)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (cuda: bfloat16 autocast where supported)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("bench", help="merge-step micro-benchmark vs an unpatched forward")
    p.add_argument("--model", default=None,
                   help=f"timm model name (default: the checkpoint's model card, else {models.DEFAULT_MODEL})")
    p.add_argument("--device", default="cpu")
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1], help="batch sizes to time")
    p.add_argument("--tokens", type=int, default=138, help="patch tokens the budgeted variants keep")
    p.add_argument("--checkpoint", default=None,
                   help="weights to time (default: seeded random init, which times the same)")
    p.add_argument("--static", action="store_true",
                   help="the static-shape benchmark: unpatched, keep-first-k oracle and static ToMato "
                        "under each --treatments")
    p.add_argument("--payoff", action="store_true",
                   help="when ToMato pays off: its speed-up at each --sims beside the keep-first-k oracle's")
    p.add_argument("--sims", nargs="+", type=float, default=[1e-3, 1e-7, 1e-15, 1e-30, 1e-60],
                   help="with --payoff: the thresholds (default: %(default)s)")
    p.add_argument("--treatments", nargs="+", default=["eager", "onnxruntime"], choices=bench.TREATMENTS,
                   help="with --static: how each model runs (default: eager onnxruntime)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--out", default=None, help="write rows + provenance to this JSON file")
    p.set_defaults(func=cmd_bench)
    return parser


def _resume_hint(args: argparse.Namespace, argv: Sequence[str]) -> str:
    command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "tomato", *argv])
    if args.command in OUT_FOLDER:
        return f"results so far are kept in {args.out}; resume with: {command}"
    return f"nothing was written; run it again with: {command}"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so it stops as cleanly as on Ctrl-C."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def _out_of_memory(e: BaseException) -> bool:
    text = str(e)
    return "can't allocate memory" in text or "out of memory" in text.lower() or isinstance(e, MemoryError)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import threading

    main_thread = threading.current_thread() is threading.main_thread()  # signals go to it alone
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    owner = None
    try:
        preflight(args)
        if args.command in OUT_FILE and getattr(args, "out", None):
            owner = claim_file(args.out)  # one writer of a record file at a time
        return args.func(args)
    except KeyboardInterrupt as e:
        # Every file is written atomically and the folder lock dies with the process,
        # so stopping here is safe: say how to continue instead of a traceback.
        what = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
        print(f"\nerror: {what}; {_resume_hint(args, argv)}", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    except (MemoryError, ValueError, RuntimeError) as e:  # RunFolderBusy is a RuntimeError
        if _out_of_memory(e):
            sizes = getattr(args, "batch_sizes", None) or getattr(args, "batch_size", None)
            flag = "--batch-sizes" if hasattr(args, "batch_sizes") else "--batch-size"
            kept = f"; results so far are kept in {args.out}" if args.command in OUT_FOLDER else ""
            print(f"error: out of memory at {flag} {sizes}: this machine cannot hold it; use a smaller "
                  f"{flag}{kept}", file=sys.stderr)
        else:
            print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # FileNotFoundError, PermissionError, a full disk ... name the file
        where = e.filename or getattr(args, "out", None)
        where = f" ({where})" if where else ""
        print(f"error: {type(e).__name__}: {e.strerror or e}{where}; {_resume_hint(args, argv)}", file=sys.stderr)
        return 2
    finally:
        if owner is not None:
            owner()
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())

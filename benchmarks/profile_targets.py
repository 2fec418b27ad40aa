"""Profiles of issue 23's three unmet CPU targets, and the before/after ratios of the changes made for them.

- ``cohen``: the inference-time certifier's draws (``smoothing.noise_counts``); target: 500 clean + 450
  triggered inputs x (n0 = 100 + N = 10,000) draws <= 120 s.
- ``training``: the sequential ensemble training of the default run (``ensemble.train_chunk``); target:
  the poisoning certifiers' part of the default run (2 x 50 models x 4 epochs of it) <= 100 s.
- ``sigma``: Cert-SSB's sigma optimisation (``sigma.optimise_sigma``) batched vs a per-sample loop;
  target >= 10x.

For each: (1) a ``torch.profiler`` table (self CPU time per operator, ONE torch thread, so that the shares
are of one core's time and nothing overlaps) grouped into convolution, linear, max-pool, activation, noise
(``normal_``), elementwise / data movement, softmax-argmax-counting, optimiser and the rest; the wall time
not spent in operators is Python overhead. Written to ``benchmarks/results/profile-<target>.txt``.
(2) interleaved ``_timing`` rounds (median of ``--repeat``) of the code as it was before this change
("before": one process-wide pool of T torch threads; for cohen also the contiguous model and one noise draw
per chunk of 8 samples) against the code now (T workers with one torch thread each), at float32 and
bfloat16 autocast, with GFLOP/s against both matmul ceilings. JSON: ``results/profile_targets-cpu.json``.

Length: three profiles, each with its own workload, "before" replica and FLOP count, kept in one script so
that one command reruns them all.

Usage: python benchmarks/profile_targets.py [--targets cohen,training,sigma] [--quick] [--repeat N]
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import _stats as S  # noqa: E402
import _timing as T  # noqa: E402
import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from certssb.core import ensemble, noise, smoothing  # noqa: E402
from certssb.core import sigma as sg  # noqa: E402
from certssb.core.noise import SPLIT_IDS, _derive  # noqa: E402
from certssb.core.precision import autocast  # noqa: E402
from certssb.io import prepare_dataset  # noqa: E402

NAME = "profile_targets"
PRECISIONS = ("float32", "bfloat16")
GROUPS = {  # operator name fragments -> group (first match wins)
    "convolution": ("convolution",),
    "linear": ("addmm", "aten::mm", "aten::bmm"),
    "max-pool": ("max_pool", "maximum"),  # maximum: ensemble.MaxPool2x2 (inference)
    "activation": ("clamp_min", "threshold_backward", "aten::relu"),
    "noise (normal_)": ("normal_",),
    "optimiser": ("_foreach", "addcdiv", "lerp", "aten::sqrt", "Optimizer"),
    "softmax / argmax / counting / loss": ("softmax", "argmax", "one_hot", "nll_loss", "scatter", "eq"),
    "elementwise / data movement": (
        "copy",
        "_to_copy",
        "index",
        "cat",
        "add",
        "mul",
        "fill_",
        "clone",
        "sum",
    ),
}


def speedup(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """before / after: the median of the per-round ratios over ALL rounds (``median``; interleaved rounds hit
    both alike on a shared machine) and ``_stats.paired_ratio``'s figures (uncontended rounds only)."""
    rounds = [b / a for b, a in zip(before["runs_s"], after["runs_s"])]
    return {"median": statistics.median(rounds), "per_round": rounds, **S.paired_ratio(before, after)}


def group_of(name: str) -> str:
    return next((g for g, keys in GROUPS.items() if any(k in name for k in keys)), "other operators")


def profiled(fn: Callable[[], Any], label: str, lines: list[str]) -> dict[str, Any]:
    """Run ``fn`` under ``torch.profiler`` on one thread; append its table to ``lines``; return shares."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fn()  # warm-up
        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        wall = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    groups: dict[str, float] = {}
    for e in events:
        groups[group_of(e.key)] = groups.get(group_of(e.key), 0.0) + e.self_cpu_time_total / 1e6
    ops = sum(groups.values())
    groups["Python / framework overhead (wall - operators)"] = max(0.0, wall - ops)
    shares = {g: s / wall for g, s in sorted(groups.items(), key=lambda kv: -kv[1])}
    lines += [f"== {label}: wall {wall:.3f} s on 1 thread (profiler on)", "group shares of the wall time:"]
    lines += [f"  {g:52s} {100 * v:5.1f} %" for g, v in shares.items()]
    lines += [prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15), ""]
    return {"wall_s_profiled": wall, "shares": shares}


def trained_model(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.nn.Module:
    plan = noise.make_noise_plan(
        seed=0, num_models=1, sigma=0.25, num_draws=1, n_train=x.shape[0], input_shape=tuple(x.shape[1:])
    )
    cfg = ensemble.TrainConfig(epochs=1)
    res = ensemble.train_one(
        x, y, torch.full((x.shape[0],), 0.25), plan, 0, cfg, num_classes, torch.device("cpu")
    )
    return ensemble.load_member("small_cnn", tuple(x.shape[1:]), num_classes, res.params, 0)


@torch.no_grad()
def cohen_before(model, x, sigma, *, seed, num_draws, num_classes, precision, batch_size=256):
    """``smoothing.noise_counts`` as it was: the caller's (contiguous) model, the whole chunk's draws at once,
    one process-wide pool of torch threads. The same noise stream and counts (up to the last bit of the
    logits: the channels_last copy rounds differently)."""
    counts = torch.zeros(x.shape[0], num_classes, dtype=torch.int64)
    for c, start in enumerate(range(0, x.shape[0], smoothing.SAMPLE_CHUNK)):
        xb, sb = x[start : start + smoothing.SAMPLE_CHUNK], sigma[start : start + smoothing.SAMPLE_CHUNK]
        g = torch.Generator().manual_seed(_derive(int(seed), SPLIT_IDS["clean"], 1, c))
        eps = torch.randn((num_draws, *xb.shape), generator=g)
        flat = (xb.unsqueeze(0) + sb.view(1, -1, 1, 1, 1) * eps).flatten(0, 1)
        logits = []
        for i in range(0, flat.shape[0], batch_size):
            with autocast(precision, "cpu"):
                logits.append(
                    model(flat[i : i + batch_size].contiguous(memory_format=torch.channels_last)).float()
                )
        p = torch.softmax(torch.cat(logits), dim=1).view(num_draws, xb.shape[0], num_classes)
        counts[start : start + xb.shape[0]] = torch.nn.functional.one_hot(p.argmax(-1), num_classes).sum(0)
    return counts


def run_cohen(data, args, lines) -> dict[str, Any]:
    x, nc = data["x_test"][: args.cohen_samples], data["num_classes"]
    model = trained_model(data["x_train"][:1000], data["y_train"][:1000], nc)
    sigma = torch.full((x.shape[0],), 0.25)
    kw = {"seed": 0, "num_draws": args.draws, "num_classes": nc}

    def after(p):
        return lambda: smoothing.noise_counts(
            model, x, sigma, split="clean", stage="estimation", precision=p, **kw
        )

    out: dict[str, Any] = {
        "workload": {"samples": x.shape[0], "draws": args.draws, "images": x.shape[0] * args.draws}
    }
    small = x[:8]
    out["profile_after"] = {
        p: profiled(
            lambda p=p: smoothing.noise_counts(
                model,
                small,
                sigma[:8],
                split="clean",
                stage="estimation",
                precision=p,
                **{**kw, "num_draws": 500},
            ),
            f"cohen now, {p}",
            lines,
        )
        for p in PRECISIONS
    }
    out["profile_before"] = {
        p: profiled(
            lambda p=p: cohen_before(model, small, sigma[:8], precision=p, **{**kw, "num_draws": 500}),
            f"cohen before, {p}",
            lines,
        )
        for p in PRECISIONS
    }
    fns = {
        f"{w}_{p}": (
            after(p) if w == "after" else (lambda p=p: cohen_before(model, x, sigma, precision=p, **kw))
        )
        for p in PRECISIONS
        for w in ("before", "after")
    }
    res, _ = T.bench_interleaved(fns, torch.device("cpu"), repeat=args.repeat)
    flops_img = C.count_flops(lambda: model(x[:1]))
    n_img = x.shape[0] * args.draws
    for k, r in res.items():
        r["images_per_s"] = n_img / r["median_s"]
        r["gflops"] = flops_img * n_img / r["median_s"] / 1e9
        r["target_s_extrapolated"] = 950 * 10_100 / r["images_per_s"]
    for p in PRECISIONS:
        res[f"after_{p}"]["speedup_over_before"] = speedup(res[f"before_{p}"], res[f"after_{p}"])
    out["results"], out["flops_per_image"] = res, flops_img
    return out


def run_training(data, args, lines) -> dict[str, Any]:
    x, y, nc = (
        data["x_train"][: args.train_samples],
        data["y_train"][: args.train_samples],
        data["num_classes"],
    )
    n, dev, m = x.shape[0], torch.device("cpu"), args.train_models
    plan = noise.make_noise_plan(
        seed=0, num_models=m, sigma=0.25, num_draws=1, n_train=n, input_shape=tuple(x.shape[1:])
    )
    sigma = torch.full((n,), 0.25)
    cfgs = {p: ensemble.TrainConfig(epochs=1, precision=p) for p in PRECISIONS}
    idx = list(range(m))
    out: dict[str, Any] = {"workload": {"samples": n, "models": m, "epochs": 1, "batch_size": 128}}
    out["profile"] = {
        p: profiled(
            lambda p=p: ensemble.train_one(x, y, sigma, plan, 0, cfgs[p], nc, dev),
            f"training 1 model, {p}",
            lines,
        )
        for p in PRECISIONS
    }
    fns = {}
    for p in PRECISIONS:
        fns[f"before_{p}"] = lambda p=p: [
            ensemble.train_one(x, y, sigma, plan, k, cfgs[p], nc, dev) for k in idx
        ]
        fns[f"after_{p}"] = lambda p=p: ensemble.train_chunk(x, y, sigma, plan, idx, cfgs[p], nc, dev)
    res, _ = T.bench_interleaved(fns, dev, repeat=args.repeat)
    full, last = divmod(n, 128)
    step = C.count_flops(lambda: _one_step(x[:128], y[:128], nc))
    flops = m * (full * step + (step * last / 128))
    for k, r in res.items():
        r["s_per_model_epoch"] = r["median_s"] / m
        r["gflops"] = flops / r["median_s"] / 1e9
        r["default_run_training_s_extrapolated"] = 2 * 50 * 4 * r["s_per_model_epoch"] * (4000 / n)
    for p in PRECISIONS:
        res[f"after_{p}"]["speedup_over_before"] = speedup(res[f"before_{p}"], res[f"after_{p}"])
    out["results"], out["flops_per_full_step"] = res, step
    return out


def _one_step(xb, yb, nc):
    model = ensemble.build_model("small_cnn", tuple(xb.shape[1:]), nc, seed=0)
    torch.nn.functional.cross_entropy(model(xb), yb).backward()


def run_sigma(data, args, lines) -> dict[str, Any]:
    x, y, nc = data["x_test"][: args.sigma_samples], data["y_test"][: args.sigma_samples], data["num_classes"]
    model = trained_model(data["x_train"][:1000], data["y_train"][:1000], nc)
    cfg = sg.SigmaConfig(steps=10, draws=4, batch_size=64)
    loop_n = args.loop_samples

    def before(p):  # the batches one after another on the process's T threads (the old code path)
        def fn():
            gen = torch.Generator().manual_seed(0)
            net = sg.copy.deepcopy(model).eval().to(memory_format=torch.channels_last).requires_grad_(False)
            for s in range(0, x.shape[0], cfg.batch_size):
                xb = x[s : s + cfg.batch_size]
                eps = [torch.randn((cfg.draws, *xb.shape), generator=gen) for _ in range(cfg.steps + 1)]
                sg._optimise_batch(net, xb, y[s : s + cfg.batch_size], eps, 0.25, cfg, p)

        return fn

    def after(p):
        return lambda: sg.optimise_sigma(model, x, y, 0.25, cfg, seed=0, precision=p)

    def loop(p):
        return lambda: [
            sg.optimise_sigma(model, x[i : i + 1], y[i : i + 1], 0.25, cfg, seed=0, precision=p)
            for i in range(loop_n)
        ]

    out: dict[str, Any] = {
        "workload": {"samples": x.shape[0], "loop_samples": loop_n, "steps": 10, "draws": 4, "batch_size": 64}
    }
    out["profile"] = {
        p: profiled(
            lambda p=p: sg.optimise_sigma(model, x[:128], y[:128], 0.25, cfg, seed=0, precision=p),
            f"sigma batched (128 samples), {p}",
            lines,
        )
        for p in PRECISIONS
    }
    out["profile_loop"] = profiled(
        loop("float32"), f"sigma per-sample loop ({loop_n} samples), float32", lines
    )
    fns = {
        f"{w}_{p}": f(p)
        for p in PRECISIONS
        for w, f in (("before", before), ("after", after), ("loop", loop))
    }
    res, _ = T.bench_interleaved(fns, torch.device("cpu"), repeat=args.repeat)
    per_sample = C.count_flops(lambda: sg.optimise_sigma(model, x[:1], y[:1], 0.25, cfg, seed=0))
    for k, r in res.items():
        count = loop_n if k.startswith("loop") else x.shape[0]
        r["samples_per_s"] = count / r["median_s"]
        r["gflops"] = per_sample * count / r["median_s"] / 1e9
    for p in PRECISIONS:
        for w in ("before", "after"):
            res[f"{w}_{p}"]["over_loop"] = (
                res[f"{w}_{p}"]["samples_per_s"] / res[f"loop_{p}"]["samples_per_s"]
            )
        res[f"after_{p}"]["speedup_over_before"] = speedup(res[f"before_{p}"], res[f"after_{p}"])
    out["results"], out["flops_per_sample"] = res, per_sample
    return out


RUNNERS = {"cohen": run_cohen, "training": run_training, "sigma": run_sigma}


def main(argv: list[str] | None = None) -> dict:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--targets", default="cohen,training,sigma")
    p.add_argument("--draws", type=int, default=None, help="cohen draws per input (default 1000, quick 200)")
    p.add_argument("--cohen-samples", type=int, default=None, help="cohen inputs (default 32, quick 16)")
    p.add_argument(
        "--train-samples", type=int, default=None, help="training images (default 4000, quick 1000)"
    )
    p.add_argument("--train-models", type=int, default=4, help="models per timed chunk (default 4)")
    p.add_argument(
        "--sigma-samples", type=int, default=None, help="sigma batched samples (default 512, quick 128)"
    )
    p.add_argument(
        "--loop-samples", type=int, default=None, help="sigma per-sample loop (default 16, quick 4)"
    )
    p.add_argument("--note", default="", help="recorded in the JSON (e.g. 'machine shared with other jobs')")
    p.add_argument("--data-root", default=str(C.DEFAULT_DATA_ROOT))
    args = p.parse_args(argv)
    dev = C.setup(args)
    q = args.quick
    args.repeat = args.repeat or 3
    args.draws = args.draws or (200 if q else 1000)
    args.cohen_samples = args.cohen_samples or (16 if q else 32)
    args.train_samples = args.train_samples or (1000 if q else 4000)
    args.sigma_samples = args.sigma_samples or (128 if q else 512)
    args.loop_samples = args.loop_samples or (4 if q else 16)
    torch.manual_seed(0)
    result, ceiling, ref = C.start_result(NAME, "issue 23's unmet CPU targets: what bounds them", args, dev)
    result["note"] = args.note
    data = prepare_dataset("mnist_embedded", root=args.data_root)
    result["results"] = {}
    for name in args.targets.split(","):
        lines = [f"profile of '{name}' ({result['environment']['timestamp_utc']}; {args.note})", ""]
        result["results"][name] = RUNNERS[name](data, args, lines)
        (C.RESULTS_DIR / f"profile-{name}.txt").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
    ref = C.finish_ceiling(ceiling, dev, quick=q)
    for name, r in result["results"].items():
        S.set_fractions(r["results"], ref)
        S.set_fractions(r["results"], ceiling["reference_bf16_gflops"], key="fraction_of_bf16_ceiling")
        cols = ("median_s", "gflops", "fraction_of_ceiling", "fraction_of_bf16_ceiling", "over_loop")
        rows = [
            {
                "variant": k,
                **{c: v.get(c) for c in cols},
                "speed-up": (v.get("speedup_over_before") or {}).get("median"),
            }
            for k, v in r["results"].items()
        ]
        C.print_table(rows, ["variant", *cols, "speed-up"], title=name)
    C.print_ceiling(ceiling)
    path = C.write_json(result, args.out or C.default_out(NAME, dev))
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()

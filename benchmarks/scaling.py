"""Scaling of ensemble training: models per second vs ensemble size M, per backend.

Backends, all through ``certssb.core.training.train_ensemble(..., checkpoint_dir=None)``:

- ``sequential`` and ``vectorised``: one chunk of all M models (``chunk_size = M``) in this process;
- ``ray_w1`` / ``ray_w2``: ``backend="ray"`` with W = 1 / 2 shards of one chunk each
  (``chunk_size = ceil(M / W)``), ``ray_options={"num_shards": W, "num_cpus": W, "num_cpus_per_shard": 1}``
  (on CUDA also ``"num_gpus_per_shard": 1``, and only with >= 2 GPUs; otherwise the ray rows are skipped).

Workload: ``small_cnn`` (``TrainConfig(epochs=1, batch_size=128)``) on a stratified subset of N images of
the embedded MNIST training split (N = 2000, 1000 with ``--quick``; ``data.prepare_dataset(max_train=N)``:
the split is ordered by class, so its first N images would hold only some digits), sigma = 0.25.

Ray is started once by this script (``ray.init(num_cpus=max W, include_dashboard=False,
log_to_driver=False)``); ``train_shards_ray`` then reuses it, so the timed points contain no start-up.
The start-up is reported separately: ``ray.init``, the time until Ray's own processes go quiet, and per W
the first (cold: worker processes import torch/certssb) and second (warm) call of a W-model run.

Timing follows ``_common``: warm-up, then ``--repeat`` interleaved rounds over the backends per M, the
headline is the best run; the cores used by *other* processes during each run are recorded. Ray's
workers are this script's descendants, so "other" here means outside this process tree (``_common``'s
own accounting would count the Ray workers as interference). On CUDA, the peak GPU memory of the local
backends is recorded (Ray shards allocate in their worker processes: not recorded).

Usage: python benchmarks/scaling.py [--quick] [--device auto|cpu|cuda] [--out PATH] [--ms 1,2,4,8]
       [--workers 1,2] [--samples N] [--repeat R] [--wait-for-benchmarks SECONDS] [--plot-only JSON]
Writes benchmarks/results/scaling-<device>.json and .png (models/s vs M, log x).
"""
from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network here; never phone home

import _common as C  # noqa: E402
import _cpu  # noqa: E402
import _stats as S  # noqa: E402
import _timing as T  # noqa: E402
import torch  # noqa: E402

from certssb.core import ensemble, noise  # noqa: E402
from certssb.execution import training  # noqa: E402
from certssb.core.data import prepare_dataset  # noqa: E402

NAME = "scaling"
LOCAL = ("sequential", "vectorised")
SIGMA = 0.25


# ---------------------------------------------------------------------------------------------------


def max_param_diff(a: ensemble.ChunkResult, b: ensemble.ChunkResult) -> float:
    return max(float((a.params[k] - b.params[k]).abs().max()) for k in a.params)


def plot(result: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        print("matplotlib missing: no plot")
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    any_contended = False
    for i, name in enumerate(result["backends"]):
        pts = [(r["M"], r["backends"][name]["models_per_second"],
                (r["backends"][name].get("foreign_cores_in_best_run") or 0.0) >= S.QUIET_THRESHOLD_CORES)
               for r in result["results"] if name in r["backends"]]
        if not pts:
            continue
        line, = ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name, color=f"C{i}")
        bad = [p for p in pts if p[2]]
        if bad:  # contended best run: hollow marker
            any_contended = True
            ax.plot([p[0] for p in bad], [p[1] for p in bad], linestyle="none", marker="o", markersize=9,
                    markerfacecolor="white", markeredgecolor=line.get_color())
    if any_contended:
        ax.plot([], [], linestyle="none", marker="o", markerfacecolor="white", markeredgecolor="grey",
                label=f"contended (others >= {S.QUIET_THRESHOLD_CORES} cores)")
    ax.set_xscale("log", base=2)
    ms = [r["M"] for r in result["results"]]
    ax.set_xticks(ms, [str(m) for m in ms])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("ensemble size M (models per call)")
    ax.set_ylabel("models / s (best of runs)")
    env, wl = result["environment"], result["workload"]
    ax.set_title(f"small_cnn, {wl['samples']} samples, {wl['epochs']} epoch -- {env['device_type']} "
                 f"({env['cpu_count']} cores)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict:
    t_start = time.perf_counter()
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--ms", default=None, help="comma-separated ensemble sizes M (default 1,2,4,8,16,32; "
                                              "1,2,4,8 with --quick)")
    p.add_argument("--workers", default="1,2", help="Ray worker (shard) counts W (default 1,2; empty: no ray)")
    p.add_argument("--backends", default="sequential,vectorised,ray", help="subset of sequential,vectorised,ray")
    p.add_argument("--samples", type=int, default=None, help="training images (default 2000, 1000 with --quick)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--data-root", default=str(C.DEFAULT_DATA_ROOT))
    p.add_argument("--wait-for-benchmarks", type=float, default=0.0,
                   help="first wait up to this many seconds (polling every 30 s) until no other process with "
                        "'benchmarks/' in its command line runs (default 0: do not wait)")
    p.add_argument("--plot-only", metavar="JSON", default=None,
                   help="only redraw the plot (next to it, .png) from an existing result JSON; no timing")
    args = p.parse_args(argv)
    if args.plot_only:
        import json

        src = Path(args.plot_only)
        print(f"wrote {plot(json.loads(src.read_text()), src.with_suffix('.png'))}")
        return {}
    dev = C.setup(args)
    waited = _cpu.wait_for_benchmarks(args.wait_for_benchmarks) if args.wait_for_benchmarks > 0 else None

    ms = [int(s) for s in (args.ms or ("1,2,4,8" if args.quick else "1,2,4,8,16,32")).split(",")]
    workers = [int(s) for s in args.workers.split(",") if s.strip()]
    wanted = {b.strip() for b in args.backends.split(",") if b.strip()}
    n_samples = args.samples or (1000 if args.quick else 2000)
    repeat = args.repeat or (1 if args.quick else 3)
    torch.manual_seed(0)

    result: dict[str, Any] = {"benchmark": NAME, "quick": bool(args.quick), "environment": C.environment(dev)}
    env = result["environment"]
    env["gpu_count"] = torch.cuda.device_count()
    if waited is not None:
        env["waited_for_other_benchmarks"] = waited
    notes: list[str] = []

    data = prepare_dataset("mnist_embedded", root=args.data_root, max_train=n_samples if n_samples < 4000 else None)
    x, y, num_classes = data["x_train"], data["y_train"], data["num_classes"]
    n = x.shape[0]
    cfg = ensemble.TrainConfig(architecture="small_cnn", epochs=args.epochs, batch_size=128)
    plan = noise.make_noise_plan(seed=0, num_models=max(ms + workers), sigma=SIGMA, num_draws=1, n_train=n,
                                 input_shape=tuple(x.shape[1:]))
    sigma = torch.full((n,), SIGMA)
    fp = f"{data['fingerprint']}:n{n}"

    # ---- which backends
    backends: dict[str, dict[str, Any]] = {b: {"backend": b} for b in LOCAL if b in wanted}
    ray = None
    if "ray" in wanted and workers:
        gpus = torch.cuda.device_count() if dev.type == "cuda" else 0
        if dev.type == "cuda" and gpus < 2:
            notes.append(f"ray skipped: --device cuda with {gpus} GPU(s); the ray rows need >= 2 GPUs "
                         "(num_gpus_per_shard=1)")
        else:
            try:
                import ray  # noqa: F811
            except ImportError:
                notes.append("ray skipped: ray is not installed (pip install -e '.[ray]')")
            else:
                for w in workers:
                    opts = {"num_shards": w, "num_cpus": w, "num_cpus_per_shard": 1}
                    if dev.type == "cuda":
                        opts["num_gpus_per_shard"] = 1
                    backends[f"ray_w{w}"] = {"backend": "ray", "workers": w, "ray_options": opts}
    try:
        from importlib.metadata import version

        env["ray_version"] = version("ray")
    except Exception:  # noqa: BLE001 - not installed
        env["ray_version"] = None
    result["backends"] = list(backends)

    def chunk_size(spec: dict[str, Any], m: int) -> int:
        return m if spec["backend"] != "ray" else math.ceil(m / spec["workers"])

    def runner(spec: dict[str, Any], m: int):
        kw = {"backend": spec["backend"], "device": str(dev.type), "chunk_size": chunk_size(spec, m),
              "checkpoint_dir": None, "num_models": m}
        if spec["backend"] == "ray":
            kw["ray_options"] = dict(spec["ray_options"])
        return lambda: training.train_ensemble(x, y, sigma, plan, cfg, num_classes=num_classes,
                                               data_fingerprint=fp, **kw)[0]

    result["workload"] = {
        "dataset": "mnist_embedded (stratified subset of the training split)", "samples": n,
        "input_shape": list(x.shape[1:]), "architecture": cfg.architecture, "epochs": cfg.epochs,
        "batch_size": cfg.batch_size, "sigma": SIGMA, "models": ms, "ray_workers": workers, "repeat": repeat,
        "chunk_size": "M for sequential/vectorised (one chunk); ceil(M/W) for ray (one chunk per shard)",
        "torch_threads_driver": torch.get_num_threads(),
        "parameter_diff_note": ("max_abs_param_diff_vs_sequential: the ray shards train with 1 torch thread, "
                                "the in-process sequential backend with the driver's thread count; a different "
                                "thread count changes the floating-point order, so ray equals sequential only up "
                                "to rounding differences that grow during training (not bit for bit) unless the "
                                "driver also runs with 1 thread"),
        "note": ("every model of every point is trained (nothing extrapolated); per M the backends run in "
                 "interleaved rounds; headline = best run; models_per_second = M / best_s. The ray shards "
                 "run with torch.set_num_threads(num_cpus_per_shard=1); the local backends with the "
                 "driver's thread count. foreign_cores = cores used by processes outside this process tree "
                 "(the Ray daemons and workers are inside it)"),
    }

    # ---- Ray start-up (once), reported separately
    startup: dict[str, Any] | None = None
    started_ray = False
    if any(s["backend"] == "ray" for s in backends.values()):
        startup = {}
        ncpu = max(workers)
        init_kw: dict[str, Any] = {"num_cpus": ncpu, "include_dashboard": False, "log_to_driver": False}
        if dev.type == "cuda":
            init_kw["num_gpus"] = torch.cuda.device_count()
        if ray.is_initialized():
            startup["init_s"] = None
            notes.append("Ray was already initialised; its start-up was not measured")
        else:
            t0 = time.perf_counter()
            ray.init(**init_kw)
            startup["init_s"] = time.perf_counter() - t0
            started_ray = True
        startup["ray_init_kwargs"] = init_kw
        # Ray may pre-start workers in the background: wait (<= 30 s) until its processes are quiet
        t0 = time.perf_counter()
        while True:
            ray_cores, others = _cpu.tree_cores(1.0)
            if ray_cores is None or ray_cores < 0.1 or time.perf_counter() - t0 > 30:
                break
        startup["settle_s"] = time.perf_counter() - t0
        startup["ray_processes_cores_when_idle"], _ = _cpu.tree_cores(2.0)
        startup["processes_in_tree_after_init"] = len(_cpu.tree_processes())
        startup["first_call"] = {}
        for name, spec in backends.items():
            if spec["backend"] != "ray":
                continue
            w = spec["workers"]
            cold = T.once(runner(spec, w), dev)[0]
            warm = T.once(runner(spec, w), dev)[0]
            startup["first_call"][name] = {"M": w, "cold_s": cold, "warm_s": warm, "cold_minus_warm_s": cold - warm}
        startup["processes_in_tree_after_first_calls"] = len(_cpu.tree_processes())
        startup["note"] = ("init_s: ray.init; settle_s: until Ray's processes used < 0.1 cores; first_call: a "
                           "W-model ray run right after (cold: worker processes start and import torch/certssb) "
                           "and once more (warm). The timed points below reuse the warm workers.")
        result["ray_startup"] = startup
        print(f"ray start-up: init {startup['init_s'] or float('nan'):.2f} s, settle {startup['settle_s']:.1f} s, "
              + ", ".join(f"{k} first call {v['cold_s']:.2f} s (warm {v['warm_s']:.2f} s)"
                          for k, v in startup["first_call"].items()), flush=True)

    # ---- the sweep
    out = Path(args.out) if args.out else C.default_out(NAME, dev)
    rows = []
    names = list(backends)
    for m in ms:
        fns = {k: runner(backends[k], m) for k in names}
        # interleaved rounds, the order rotated each round; each measurement's untimed first call warms up
        res, outs = T.bench_interleaved(fns, dev, repeat=repeat, keep_outputs=True, rotate=True,
                                        sample=_cpu.sample_tree)
        row: dict[str, Any] = {"M": m, "backends": {}}
        for k in names:
            s = res[k]
            spec = backends[k]
            cs = chunk_size(spec, m)
            row["backends"][k] = {
                **s, "models_per_second": m / s["best_s"], "seconds_per_model": s["best_s"] / m,
                "models_per_second_median": m / s["median_s"], "chunk_size": cs,
                "shards": math.ceil(m / cs) if spec["backend"] == "ray" else None,
                "peak_memory_mib": s["peak_memory_mib"] if spec["backend"] != "ray" else None,
            }
        if "sequential" in outs:
            row["max_abs_param_diff_vs_sequential"] = {k: max_param_diff(outs[k], outs["sequential"])
                                                      for k in names if k != "sequential"}
        rows.append(row)
        print(f"  M={m}: " + ", ".join(f"{k} {row['backends'][k]['models_per_second']:.2f} models/s "
                                       f"({row['backends'][k]['best_s']:.2f} s)" for k in names), flush=True)
        del outs
        # a partial JSON after every M, so that an interrupted run leaves what it measured
        result.update(results=rows, complete=False, notes=notes, total_wall_s=time.perf_counter() - t_start)
        C.write_json(result, out)

    result["results"] = rows
    result["complete"] = True
    result["fit_time_vs_M"] = {k: S.fit_line([r["M"] for r in rows], [r["backends"][k]["best_s"] for r in rows])
                               for k in names}
    result["summary"] = {
        "models_per_second": {k: {str(r["M"]): r["backends"][k]["models_per_second"] for r in rows} for k in names},
        "ray_init_s": startup.get("init_s") if startup else None,
        "ray_first_call_cold_minus_warm_s": ({k: v["cold_minus_warm_s"] for k, v in startup["first_call"].items()}
                                             if startup else None),
        "max_foreign_cores_in_best_runs": max((r["backends"][k].get("foreign_cores_in_best_run") or 0.0
                                               for r in rows for k in names), default=None),
    }
    busy = result["summary"]["max_foreign_cores_in_best_runs"]
    if busy is not None and busy > S.QUIET_THRESHOLD_CORES:
        notes.append(f"other processes used up to {busy:.2f} cores during the best runs: the timings are "
                     "distorted (multi-threaded in-process backends suffer most: their OpenMP threads wait "
                     "for each other when a core is taken)")
    if started_ray:
        ray.shutdown()
    result["notes"] = notes
    result["total_wall_s"] = time.perf_counter() - t_start
    out = C.write_json(result, out)
    png = plot(result, out.with_suffix(".png"))

    table = []
    for r in rows:
        t = {"M": r["M"]}
        for k in names:
            b = r["backends"][k]
            t[f"{k} m/s"] = b["models_per_second"]
            t[f"{k} others"] = b.get("foreign_cores_in_best_run")
        table.append(t)
    cols = ["M"] + [f"{k} m/s" for k in names] + [f"{k} others" for k in names]
    C.print_table(table, cols, title=f"{NAME} on {dev.type}: models/s (best of {repeat}), {n} samples, "
                                     f"{cfg.epochs} epoch; 'others' = cores used by other processes in that run")
    for k, f in result["fit_time_vs_M"].items():
        if f:
            print(f"  {k}: t(M) = {f['overhead_s']:.3f} s + M * {f['s_per_model']:.4f} s")
    for note in notes:
        print("note:", note)
    print(f"total {result['total_wall_s']:.0f} s; wrote {out}" + (f" and {png}" if png else ""))
    return result


if __name__ == "__main__":
    main()

"""Scaling of ensemble training: models per second vs ensemble size M, per backend.

Backends, all through ``certssb.execution.training.train_ensemble(..., checkpoint_dir=None)``:

- ``sequential`` and ``vectorised``: one chunk of all M models (``chunk_size = M``) in this process;
- ``ray_w1`` / ``ray_w2``: ``backend="ray"`` with W = 1 / 2 shards of one chunk each
  (``chunk_size = ceil(M / W)``), ``ray_options={"num_shards": W, "num_cpus": W, "num_cpus_per_shard": 1}``
  (on CUDA also ``"num_gpus_per_shard": 1``, and only with >= 2 GPUs; otherwise the ray rows are skipped).

Workload: ``small_cnn`` (``TrainConfig(epochs=1, batch_size=128)``) on a stratified subset of N images of
the embedded MNIST training split (N = 2000, 1000 with ``--quick``; ``io.prepare_dataset(max_train=N)``:
the split is ordered by class, so its first N images would hold only some digits), sigma = 0.25.

Ray is started once by this script (``ray.init(num_cpus=max W, include_dashboard=False,
log_to_driver=False)``); ``train_shards_ray`` then reuses it, so the timed points contain no start-up.
The start-up is reported separately: ``ray.init``, the time until Ray's own processes go quiet, and per W
the first (cold: worker processes import torch/certssb) and second (warm) call of a W-model run.

Timing follows ``_timing``: per M, ``--repeat`` interleaved rounds over the backends (the order rotated
each round), each a ``torch.utils.benchmark.Timer`` measurement with one untimed call first; the headline
is the best round; the cores used by *other* processes during each round are recorded. Ray's workers are
this script's descendants, so "other" here means outside this process tree (``_cpu.sample_tree``). On
CUDA, the peak GPU memory of the local backends is recorded (Ray shards allocate in their worker
processes: not recorded). The fit, summary, plot and table are in ``_scaling_report``.

Usage: python benchmarks/scaling.py [--quick] [--device auto|cpu|cuda] [--out PATH] [--ms 1,2,4,8]
       [--workers 1,2] [--backends sequential,vectorised,ray] [--samples N] [--epochs E] [--repeat R]
       [--wait-for-benchmarks SECONDS] [--plot-only JSON]
Writes benchmarks/results/scaling-<device>.json and .png (models/s vs M, log x).

Length: over 350 lines once formatted by ruff: four backends (two of them Ray) timed in the same rounds
need their start-up and warm-up handled in one script; the report lives in _scaling_report.py.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network here; never phone home

import _common as C  # noqa: E402
import _cpu  # noqa: E402
import _scaling_report as R  # noqa: E402
import _timing as T  # noqa: E402
import torch  # noqa: E402

from certssb.core import ensemble, noise  # noqa: E402
from certssb.execution import training  # noqa: E402
from certssb.io import prepare_dataset  # noqa: E402

NAME = "scaling"
LOCAL = ("sequential", "vectorised")
SIGMA = 0.25


# ---------------------------------------------------------------------------------------------------
# Command line and workload


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument(
        "--ms",
        default=None,
        help="comma-separated ensemble sizes M (default 1,2,4,8,16,32; 1,2,4,8 with --quick)",
    )
    p.add_argument(
        "--workers", default="1,2", help="Ray worker (shard) counts W (default 1,2; empty: no ray)"
    )
    p.add_argument(
        "--backends", default="sequential,vectorised,ray", help="subset of sequential,vectorised,ray"
    )
    p.add_argument(
        "--samples", type=int, default=None, help="training images (default 2000, 1000 with --quick)"
    )
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--data-root", default=str(C.DEFAULT_DATA_ROOT))
    p.add_argument(
        "--wait-for-benchmarks",
        type=float,
        default=0.0,
        help="first wait up to this many seconds (polling every 30 s) until no other process with "
        "'benchmarks/' in its command line runs (default 0: do not wait)",
    )
    p.add_argument(
        "--plot-only",
        metavar="JSON",
        default=None,
        help="only redraw the plot (next to it, .png) from an existing result JSON; no timing",
    )
    args = p.parse_args(argv)
    args.ms = [int(s) for s in (args.ms or ("1,2,4,8" if args.quick else "1,2,4,8,16,32")).split(",")]
    args.workers = [int(s) for s in args.workers.split(",") if s.strip()]
    args.backends = {b.strip() for b in args.backends.split(",") if b.strip()}
    args.samples = args.samples or (1000 if args.quick else 2000)
    args.repeat = args.repeat or (1 if args.quick else 3)
    return args


@dataclass
class Workload:
    """The training data, noise plan and config every backend trains on."""

    x: torch.Tensor
    y: torch.Tensor
    sigma: torch.Tensor
    plan: Any
    cfg: ensemble.TrainConfig
    num_classes: int
    fingerprint: str
    device: torch.device

    @property
    def n(self) -> int:
        return self.x.shape[0]

    def runner(self, spec: dict[str, Any], m: int) -> Callable[[], ensemble.ChunkResult]:
        """A call that trains M models on backend ``spec`` and returns the first chunk's result."""
        kw = {
            "backend": spec["backend"],
            "device": str(self.device.type),
            "chunk_size": chunk_size(spec, m),
            "checkpoint_dir": None,
            "num_models": m,
        }
        if spec["backend"] == "ray":
            kw["ray_options"] = dict(spec["ray_options"])
        return lambda: training.train_ensemble(
            self.x,
            self.y,
            self.sigma,
            self.plan,
            self.cfg,
            num_classes=self.num_classes,
            data_fingerprint=self.fingerprint,
            **kw,
        )[0]


def load_workload(args: argparse.Namespace, dev: torch.device) -> Workload:
    n = args.samples
    data = prepare_dataset("mnist_embedded", root=args.data_root, max_train=n if n < 4000 else None)
    x = data["x_train"]
    plan = noise.make_noise_plan(
        seed=0,
        num_models=max(args.ms + args.workers),
        sigma=SIGMA,
        num_draws=1,
        n_train=x.shape[0],
        input_shape=tuple(x.shape[1:]),
    )
    return Workload(
        x=x,
        y=data["y_train"],
        sigma=torch.full((x.shape[0],), SIGMA),
        plan=plan,
        cfg=ensemble.TrainConfig(architecture="small_cnn", epochs=args.epochs, batch_size=128),
        num_classes=data["num_classes"],
        fingerprint=f"{data['fingerprint']}:n{x.shape[0]}",
        device=dev,
    )


def chunk_size(spec: dict[str, Any], m: int) -> int:
    """M for the local backends (one chunk); ceil(M / W) for ray (one chunk per shard)."""
    return m if spec["backend"] != "ray" else math.ceil(m / spec["workers"])


def select_backends(
    args: argparse.Namespace, dev: torch.device, notes: list[str]
) -> dict[str, dict[str, Any]]:
    """The backends to time, by name; the ray rows only where ray is installed and the device allows."""
    backends: dict[str, dict[str, Any]] = {b: {"backend": b} for b in LOCAL if b in args.backends}
    if "ray" not in args.backends or not args.workers:
        return backends
    gpus = torch.cuda.device_count() if dev.type == "cuda" else 0
    if dev.type == "cuda" and gpus < 2:
        notes.append(
            f"ray skipped: --device cuda with {gpus} GPU(s); the ray rows need >= 2 GPUs "
            "(num_gpus_per_shard=1)"
        )
        return backends
    try:
        import ray  # noqa: F401
    except ImportError:
        notes.append("ray skipped: ray is not installed (pip install -e '.[ray]')")
        return backends
    for w in args.workers:
        opts = {"num_shards": w, "num_cpus": w, "num_cpus_per_shard": 1}
        if dev.type == "cuda":
            opts["num_gpus_per_shard"] = 1
        backends[f"ray_w{w}"] = {"backend": "ray", "workers": w, "ray_options": opts}
    return backends


def ray_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("ray")
    except Exception:  # noqa: BLE001 - not installed
        return None


def workload_info(wl: Workload, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "dataset": "mnist_embedded (stratified subset of the training split)",
        "samples": wl.n,
        "input_shape": list(wl.x.shape[1:]),
        "architecture": wl.cfg.architecture,
        "epochs": wl.cfg.epochs,
        "batch_size": wl.cfg.batch_size,
        "sigma": SIGMA,
        "models": args.ms,
        "ray_workers": args.workers,
        "repeat": args.repeat,
        "chunk_size": "M for sequential/vectorised (one chunk); ceil(M/W) for ray (one chunk per shard)",
        "torch_threads_driver": torch.get_num_threads(),
        "parameter_diff_note": (
            "max_abs_param_diff_vs_sequential: the ray shards train with 1 torch thread, "
            "the in-process sequential backend with the driver's thread count; a different "
            "thread count changes the floating-point order, so ray equals sequential only up "
            "to rounding differences that grow during training (not bit for bit) unless the "
            "driver also runs with 1 thread"
        ),
        "note": (
            "every model of every point is trained (nothing extrapolated); per M the backends run in "
            "interleaved rounds, each a Timer measurement with one untimed call first; headline = best "
            "round; models_per_second = M / best_s. The ray shards run with "
            "torch.set_num_threads(num_cpus_per_shard=1); the local backends with the driver's thread "
            "count. foreign_cores = cores used by processes outside this process tree (the Ray daemons "
            "and workers are inside it)"
        ),
    }


# ---------------------------------------------------------------------------------------------------
# Ray start-up and the timed points


def start_ray(
    backends: dict[str, dict[str, Any]], wl: Workload, args: argparse.Namespace, notes: list[str]
) -> tuple[dict[str, Any] | None, bool]:
    """Start Ray once (when a ray backend is wanted) and measure its start-up: ``ray.init``, the time
    until its processes are quiet, and per W a cold and a warm first call. Returns (start-up, started)."""
    if not any(s["backend"] == "ray" for s in backends.values()):
        return None, False
    import ray

    dev = wl.device
    startup: dict[str, Any] = {}
    init_kw: dict[str, Any] = {
        "num_cpus": max(args.workers),
        "include_dashboard": False,
        "log_to_driver": False,
    }
    if dev.type == "cuda":
        init_kw["num_gpus"] = torch.cuda.device_count()
    started = False
    if ray.is_initialized():
        startup["init_s"] = None
        notes.append("Ray was already initialised; its start-up was not measured")
    else:
        t0 = time.perf_counter()
        ray.init(**init_kw)
        startup["init_s"] = time.perf_counter() - t0
        started = True
    startup["ray_init_kwargs"] = init_kw
    # Ray may pre-start workers in the background: wait (<= 30 s) until its processes are quiet
    t0 = time.perf_counter()
    while True:
        ray_cores, _ = _cpu.tree_cores(1.0)
        if ray_cores is None or ray_cores < 0.1 or time.perf_counter() - t0 > 30:
            break
    startup["settle_s"] = time.perf_counter() - t0
    startup["ray_processes_cores_when_idle"], _ = _cpu.tree_cores(2.0)
    startup["processes_in_tree_after_init"] = len(_cpu.tree_processes())
    startup["first_call"] = {}
    for name, spec in backends.items():
        if spec["backend"] == "ray":  # single calls on purpose: the first one is the cold start
            w = spec["workers"]
            cold = T.once(wl.runner(spec, w), dev)[0]
            warm = T.once(wl.runner(spec, w), dev)[0]
            startup["first_call"][name] = {
                "M": w,
                "cold_s": cold,
                "warm_s": warm,
                "cold_minus_warm_s": cold - warm,
            }
    startup["processes_in_tree_after_first_calls"] = len(_cpu.tree_processes())
    startup["note"] = (
        "init_s: ray.init; settle_s: until Ray's processes used < 0.1 cores; first_call: a "
        "W-model ray run right after (cold: worker processes start and import torch/certssb) "
        "and once more (warm). The timed points below reuse the warm workers."
    )
    print(
        f"ray start-up: init {startup['init_s'] or float('nan'):.2f} s, settle {startup['settle_s']:.1f} s, "
        + ", ".join(
            f"{k} first call {v['cold_s']:.2f} s (warm {v['warm_s']:.2f} s)"
            for k, v in startup["first_call"].items()
        ),
        flush=True,
    )
    return startup, started


def max_param_diff(a: ensemble.ChunkResult, b: ensemble.ChunkResult) -> float:
    return max(float((a.params[k] - b.params[k]).abs().max()) for k in a.params)


def run_point(m: int, backends: dict[str, dict[str, Any]], wl: Workload, repeat: int) -> dict[str, Any]:
    """Every backend trains M models, in ``repeat`` interleaved rounds (order rotated each round)."""
    names = list(backends)
    fns = {k: wl.runner(backends[k], m) for k in names}
    res, outs = T.bench_interleaved(
        fns, wl.device, repeat=repeat, keep_outputs=True, rotate=True, sample=_cpu.sample_tree
    )
    row: dict[str, Any] = {"M": m, "backends": {}}
    for k in names:
        s, spec = res[k], backends[k]
        cs = chunk_size(spec, m)
        row["backends"][k] = {
            **s,
            "models_per_second": m / s["best_s"],
            "seconds_per_model": s["best_s"] / m,
            "models_per_second_median": m / s["median_s"],
            "chunk_size": cs,
            "shards": math.ceil(m / cs) if spec["backend"] == "ray" else None,
            "peak_memory_mib": s["peak_memory_mib"] if spec["backend"] != "ray" else None,
        }
    if "sequential" in outs:
        row["max_abs_param_diff_vs_sequential"] = {
            k: max_param_diff(outs[k], outs["sequential"]) for k in names if k != "sequential"
        }
    print(
        f"  M={m}: "
        + ", ".join(
            f"{k} {row['backends'][k]['models_per_second']:.2f} models/s "
            f"({row['backends'][k]['best_s']:.2f} s)"
            for k in names
        ),
        flush=True,
    )
    return row


# ---------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    t_start = time.perf_counter()
    args = parse_args(argv)
    if args.plot_only:
        print(f"wrote {R.plot_only(args.plot_only)}")
        return {}
    dev = C.setup(args)
    waited = _cpu.wait_for_benchmarks(args.wait_for_benchmarks) if args.wait_for_benchmarks > 0 else None
    torch.manual_seed(0)

    result: dict[str, Any] = {"benchmark": NAME, "quick": bool(args.quick), "environment": C.environment(dev)}
    env = result["environment"]
    env["gpu_count"] = torch.cuda.device_count()
    if waited is not None:
        env["waited_for_other_benchmarks"] = waited
    notes: list[str] = []
    wl = load_workload(args, dev)
    backends = select_backends(args, dev, notes)
    env["ray_version"] = ray_version()
    result["backends"] = list(backends)
    result["workload"] = workload_info(wl, args)
    startup, started_ray = start_ray(backends, wl, args, notes)
    if startup is not None:
        result["ray_startup"] = startup

    out = Path(args.out) if args.out else C.default_out(NAME, dev)
    rows: list[dict[str, Any]] = []
    for m in args.ms:
        rows.append(run_point(m, backends, wl, args.repeat))
        # a partial JSON after every M, so that an interrupted run leaves what it measured
        result.update(results=rows, complete=False, notes=notes, total_wall_s=time.perf_counter() - t_start)
        C.write_json(result, out)

    result["complete"] = True
    R.summarise_sweep(result, startup, notes)
    if started_ray:
        import ray

        ray.shutdown()
    result["notes"] = notes
    result["total_wall_s"] = time.perf_counter() - t_start
    out = C.write_json(result, out)
    R.print_report(result, out, R.plot(result, out.with_suffix(".png")))
    return result


if __name__ == "__main__":
    main()

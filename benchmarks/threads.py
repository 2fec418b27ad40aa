"""The thread policy against torch's default: one training run alone and two at once, in one run.

Workload: the ensemble's unit of work, ``certssb.core.ensemble.train_one`` (small CNN, channels_last on CPU)
on synthetic 1x28x28 data, in a fresh Python process per run, so each process gets its own torch thread
pool exactly as two ``kedro run``s would. Four configurations, interleaved over ``--repeat`` rounds:

- ``alone/default``: one process, torch's default thread count (``OMP_NUM_THREADS`` unset: all cores);
- ``alone/policy``: one process, ``num_threads = cores / 1`` (certssb.execution.threads.policy_threads);
- ``pair/default``: two processes started together, torch's default threads each;
- ``pair/policy``: two processes started together, ``cores / 2`` threads each.

Reported: each process's training seconds (best and median over the rounds; for pairs the slower of the
two), and the ratios default / policy alone and in pairs (> 1: the policy is faster), plus the pair's
slowdown against one run alone. Writes ``benchmarks/results/threads-cpu.json``.

Do not run it beside other jobs: the point is the interference between the two processes it starts.

    python benchmarks/threads.py            # ~ 8 training runs of ~ 10 s each per round, 3 rounds
    python benchmarks/threads.py --quick    # tiny sizes: checks the script end to end (figures meaningless)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common  # noqa: F401 - puts the source tree on the path when the package is not installed
from _common import base_parser, default_out, environment, print_table, write_json
from _stats import summarise

from certssb.execution.threads import available_cores, policy_threads

CONFIGS = (("alone", "default"), ("alone", "policy"), ("pair", "default"), ("pair", "policy"))


def worker(n: int, epochs: int, threads: int | None) -> None:
    """One training run in this process; prints its JSON (seconds, threads) on stdout."""
    import torch

    from certssb.core.ensemble import TrainConfig, train_one
    from certssb.core.noise import make_noise_plan

    if threads is not None:
        torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(n, 1, 28, 28, generator=g), torch.arange(n) % 10
    plan = make_noise_plan(seed=0, num_models=1, sigma=0.25, num_draws=1, n_train=n, input_shape=(1, 28, 28))
    cfg = TrainConfig(architecture="small_cnn", epochs=epochs, batch_size=128, lr=1e-3)
    t0 = time.perf_counter()
    train_one(x, y, torch.full((n,), 0.25), plan, 0, cfg, 10, torch.device("cpu"))
    print(json.dumps({"seconds": time.perf_counter() - t0, "threads": torch.get_num_threads()}))


def _spawn(count: int, threads: int | None, n: int, epochs: int) -> list[dict[str, Any]]:
    """``count`` worker processes started together; their results."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    cmd = [sys.executable, __file__, "--worker", "--n", str(n), "--epochs", str(epochs)]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) for _ in range(count)]
    out = []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"worker failed (exit {p.returncode})")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def main() -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=None, help="training images per run (default 4000; --quick 256)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default 3; --quick 1)")
    p.add_argument("--threads", type=int, default=None, help="(worker) torch threads; default: torch's")
    args = p.parse_args()
    n = args.n or (256 if args.quick else 4000)
    epochs = args.epochs or (1 if args.quick else 3)
    if args.worker:
        worker(n, epochs, args.threads)
        return
    import torch

    cores = available_cores()
    repeat = args.repeat or (1 if args.quick else 3)
    threads = {
        ("alone", "default"): None,
        ("pair", "default"): None,
        ("alone", "policy"): policy_threads(1, cores),
        ("pair", "policy"): policy_threads(2, cores),
    }
    runs: dict[str, list[float]] = {f"{a}/{b}": [] for a, b in CONFIGS}
    seen_threads: dict[str, list[int]] = {k: [] for k in runs}
    for _ in range(repeat):  # interleaved rounds
        for count_name, policy in CONFIGS:
            res = _spawn(1 if count_name == "alone" else 2, threads[(count_name, policy)], n, epochs)
            key = f"{count_name}/{policy}"
            runs[key].append(max(r["seconds"] for r in res))  # a pair is done when its slower run is
            seen_threads[key] = [r["threads"] for r in res]
    stats = {k: summarise(v) for k, v in runs.items()}
    best = {k: s["best_s"] for k, s in stats.items()}
    ratios = {
        "alone_default_over_policy": best["alone/default"] / best["alone/policy"],
        "pair_default_over_policy": best["pair/default"] / best["pair/policy"],
        "pair_default_slowdown_vs_alone": best["pair/default"] / best["alone/default"],
        "pair_policy_slowdown_vs_alone": best["pair/policy"] / best["alone/policy"],
    }
    env = environment(torch.device("cpu"))
    result = {
        "benchmark": "threads",
        "quick": bool(args.quick),
        "environment": env,
        "workload": {
            "function": "certssb.core.ensemble.train_one",
            "architecture": "small_cnn",
            "n_train": n,
            "epochs": epochs,
            "batch_size": 128,
            "input": [1, 28, 28],
        },
        "cores": cores,
        "rounds": repeat,
        "threads": {k: v for k, v in seen_threads.items()},
        "results": stats,
        "ratios": ratios,
        "note": "seconds = training time of one process (pairs: the slower of the two); best = minimum "
        "over interleaved rounds; ratio > 1: the policy (cores / concurrent jobs) is faster",
    }
    rows = [
        {
            "config": k,
            "threads": ",".join(map(str, seen_threads[k])),
            "best_s": f"{stats[k]['best_s']:.2f}",
            "median_s": f"{stats[k]['median_s']:.2f}",
        }
        for k in runs
    ]
    print_table(rows, ["config", "threads", "best_s", "median_s"], title=f"threads on {cores} cores")
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}")
    out = Path(args.out) if args.out else default_out("threads", torch.device("cpu"))
    print(f"wrote {write_json(result, out)}")


if __name__ == "__main__":
    main()

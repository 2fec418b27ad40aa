"""Ensemble training: ``sequential`` vs ``vectorised`` backend of ``certssb.core.ensemble.train_chunk``.

For M in {1, 8, 32} small CNNs (``TrainConfig(architecture="small_cnn", epochs=E, batch_size=128)``) on
the embedded MNIST training split, both backends train the same M models on the same M noisy copies
(sigma = 0.25 everywhere), each at float32 and under bfloat16 autocast (``TrainConfig.precision``; the
bf16 speed-ups and the fraction of both matmul ceilings come from the same run). Repetitions of the variants
are interleaved so that interference from
other processes hits both alike; each timed run is a ``torch.utils.benchmark.Timer`` measurement that
first calls ``train_chunk`` once untimed (``_timing``). Every model of every M is really trained (nothing
extrapolated).

Achieved FLOP/s: ``FlopCounterMode`` counts one training step (forward, loss, backward, Adam) of one
model at the full batch size and at the last, partial batch size; FLOPs of a run =
E * M * (full_batches * F_full + F_last), the same useful work for both backends.

Usage: python benchmarks/ensemble_training.py [--quick] [--device auto|cpu|cuda] [--out PATH]
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import _stats as S  # noqa: E402
import _timing as T  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from certssb.core import ensemble, noise  # noqa: E402
from certssb.core.models import build_model  # noqa: E402
from certssb.io import prepare_dataset  # noqa: E402

NAME = "ensemble_training"
TARGET = ">=5x at M=32 on a GPU"
BACKENDS = ("sequential", "vectorised")
#: each backend at float32 and under bfloat16 autocast (TrainConfig.precision), timed in the same rounds
VARIANTS = {**{b: (b, "float32") for b in BACKENDS}, **{f"{b}_bf16": (b, "bfloat16") for b in BACKENDS}}


def step_flops(n_batch: int, cfg: ensemble.TrainConfig, in_shape, num_classes: int) -> int:
    """FLOPs of one training step of one model on a batch of ``n_batch`` (as in ``train_one``)."""
    model = build_model(cfg.architecture, in_shape, num_classes, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    xb = torch.rand(n_batch, *in_shape)
    yb = torch.randint(0, num_classes, (n_batch,))

    def step() -> None:
        loss = nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return C.count_flops(step)


def vectorised_step_flops(
    m: int, n_batch: int, cfg: ensemble.TrainConfig, in_shape, num_classes: int
) -> int | None:
    """Cross-check: FLOPs of one vmapped step of m stacked models (None if the counter fails under vmap)."""
    from torch.func import functional_call, stack_module_state, vmap

    try:
        models = [build_model(cfg.architecture, in_shape, num_classes, seed=k) for k in range(m)]
        params, _ = stack_module_state(models)
        params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        base = build_model(cfg.architecture, in_shape, num_classes, seed=0).to("meta")
        xs = torch.rand(m, n_batch, *in_shape)
        ys = torch.randint(0, num_classes, (n_batch,))

        def loss_fn(p, xb, yb):
            return nn.functional.cross_entropy(functional_call(base, p, (xb,)), yb)

        def step() -> None:
            vmap(loss_fn, in_dims=(0, 0, None))(params, xs, ys).sum().backward()

        return C.count_flops(step)
    except Exception:  # noqa: BLE001 - a cross-check only
        return None


def max_param_diff(a: ensemble.ChunkResult, b: ensemble.ChunkResult) -> float:
    return max(float((a.params[k] - b.params[k]).abs().max()) for k in a.params)


def main(argv: list[str] | None = None) -> dict:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=1, help="epochs per model (default 1)")
    p.add_argument(
        "--samples",
        type=int,
        default=None,
        help="training samples (stratified subset; default 4000 = all, 1000 with --quick)",
    )
    p.add_argument("--models", default="1,8,32", help="comma-separated ensemble sizes M (default 1,8,32)")
    p.add_argument("--data-root", default=str(C.DEFAULT_DATA_ROOT))
    args = p.parse_args(argv)
    dev = C.setup(args)
    sizes = [int(s) for s in args.models.split(",")]
    n_samples = args.samples or (1000 if args.quick else 4000)
    repeat = args.repeat or 3
    torch.manual_seed(0)

    result, ceiling, c_ref = C.start_result(NAME, TARGET, args, dev)

    data = prepare_dataset(
        "mnist_embedded", root=args.data_root, max_train=n_samples if n_samples < 4000 else None
    )
    x, y, num_classes = data["x_train"], data["y_train"], data["num_classes"]
    n = x.shape[0]
    cfg = ensemble.TrainConfig(architecture="small_cnn", epochs=args.epochs, batch_size=128)
    plan = noise.make_noise_plan(
        seed=0, num_models=max(sizes), sigma=0.25, num_draws=1, n_train=n, input_shape=tuple(x.shape[1:])
    )
    sigma = torch.full((n,), 0.25)

    full, last = divmod(n, cfg.batch_size)
    f_full = step_flops(cfg.batch_size, cfg, tuple(x.shape[1:]), num_classes)
    f_last = step_flops(last, cfg, tuple(x.shape[1:]), num_classes) if last else 0
    flops_per_model = cfg.epochs * (full * f_full + f_last)
    vec_check = vectorised_step_flops(2, cfg.batch_size, cfg, tuple(x.shape[1:]), num_classes)
    result["workload"] = {
        "dataset": "mnist_embedded",
        "samples": n,
        "input_shape": list(x.shape[1:]),
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "architecture": cfg.architecture,
        "models": sizes,
        "sigma": 0.25,
        "steps_per_model": cfg.epochs * (full + (1 if last else 0)),
        "flops_per_step_full_batch": f_full,
        "flops_per_step_last_batch": f_last,
        "flops_per_model": flops_per_model,
        "flops_per_sample_step": f_full / cfg.batch_size,
        "flops_vmapped_step_of_2_models_crosscheck": vec_check,
        "repeat": repeat,
        "extrapolated": False,
        "note": (
            "every model is trained; the two backends run in interleaved rounds; times per backend are "
            "the best run; speedup = median over rounds of t_sequential / t_vectorised (the ratio of the "
            "best runs is given too). FlopCounterMode over-counts the grouped convolution_backward that "
            "vmap produces (grad_weight not divided by groups), so FLOPs are the per-model count"
        ),
    }

    rows = []
    for m in sizes:
        idx = list(range(m))
        cfgs = {p: dataclasses.replace(cfg, precision=p) for p in ("float32", "bfloat16")}
        fns = {
            v: (lambda b=b, p=p: ensemble.train_chunk(x, y, sigma, plan, idx, cfgs[p], num_classes, dev, b))
            for v, (b, p) in VARIANTS.items()
        }
        # each measurement's untimed first call warms up (thread pools, kernel selection, allocator)
        res, outs = T.bench_interleaved(fns, dev, repeat=repeat, keep_outputs=True)
        row: dict = {
            "M": m,
            "max_abs_param_diff_vectorised_vs_sequential": max_param_diff(
                outs["sequential"], outs["vectorised"]
            ),
        }
        for backend in VARIANTS:
            s = res[backend]
            row[backend] = {
                **s,
                "seconds_per_model": s["best_s"] / m,
                "models_per_second": m / s["best_s"],
                **S.achieved(flops_per_model * m, s["best_s"], c_ref),
            }
        # time ratio sequential / vectorised = speed ratio vectorised / sequential
        sp = S.paired_ratio(res["sequential"], res["vectorised"])
        row["speedup_vectorised_over_sequential"] = sp["median_of_rounds"]
        row["speedup_vectorised_over_sequential_of_best"] = sp["of_best"]
        row["clean_rounds"] = f"{sp['clean_rounds']}/{sp['rounds']}"
        for b in BACKENDS:  # bf16 speed over fp32, same backend, same rounds
            row[f"speedup_bf16_over_fp32_{b}"] = S.paired_ratio(res[b], res[f"{b}_bf16"])["median_of_rounds"]
        rows.append(row)
        print(
            f"  M={m}: sequential {row['sequential']['best_s']:.3f} s, vectorised "
            f"{row['vectorised']['best_s']:.3f} s, vectorised/sequential speed "
            f"{sp['median_of_rounds']:.3f}; "
            f"bf16/fp32 speed: sequential {row['speedup_bf16_over_fp32_sequential']:.3f}, vectorised "
            f"{row['speedup_bf16_over_fp32_vectorised']:.3f}",
            flush=True,
        )

    result["results"] = rows
    c_ref = C.finish_ceiling(ceiling, dev, quick=args.quick)
    S.set_fractions(rows, c_ref)
    S.set_fractions(rows, ceiling["reference_bf16_gflops"], "fraction_of_bf16_ceiling")
    C.print_ceiling(ceiling)
    m_top = max(sizes)
    result["summary"] = {
        f"speedup_at_M{m_top}": rows[-1]["speedup_vectorised_over_sequential"],
        "speedup_vectorised_over_sequential_by_M": {
            str(r["M"]): r["speedup_vectorised_over_sequential"] for r in rows
        },
        "fraction_of_ceiling_by_M": {
            str(r["M"]): {b: r[b]["fraction_of_ceiling"] for b in VARIANTS} for r in rows
        },
        "fraction_of_bf16_ceiling_by_M": {
            str(r["M"]): {b: r[b]["fraction_of_bf16_ceiling"] for b in VARIANTS} for r in rows
        },
        "speedup_bf16_over_fp32_by_M": {
            str(r["M"]): {b: r[f"speedup_bf16_over_fp32_{b}"] for b in BACKENDS} for r in rows
        },
        "matmul_bf16_over_fp32": ceiling["bf16_over_fp32"],
        "target": TARGET,
        "target_met": bool(
            dev.type == "cuda" and rows[-1]["speedup_vectorised_over_sequential"] >= 5.0 and m_top == 32
        ),
        "target_applies": dev.type == "cuda",
    }
    out = C.write_json(result, args.out or C.default_out(NAME, dev))

    table = []
    for r in rows:
        for backend in VARIANTS:
            b = r[backend]
            table.append(
                {
                    "M": r["M"],
                    "backend": backend,
                    "best_s": b["best_s"],
                    "median_s": b["median_s"],
                    "s/model": b["seconds_per_model"],
                    "models/s": b["models_per_second"],
                    "GFLOP/s": b["gflops"],
                    "frac_ceiling": b["fraction_of_ceiling"],
                    "frac_bf16_ceiling": b["fraction_of_bf16_ceiling"],
                    "vec/seq": r["speedup_vectorised_over_sequential"] if backend == "vectorised" else None,
                    "vec/seq_best": r["speedup_vectorised_over_sequential_of_best"]
                    if backend == "vectorised"
                    else None,
                    "peak_MiB": b["peak_memory_mib"],
                }
            )
    C.print_table(
        table,
        [
            "M",
            "backend",
            "best_s",
            "median_s",
            "s/model",
            "models/s",
            "GFLOP/s",
            "frac_ceiling",
            "frac_bf16_ceiling",
            "vec/seq",
            "vec/seq_best",
            "peak_MiB",
        ],
        title=f"{NAME} on {dev.type}: {n} samples, {cfg.epochs} epoch(s), target {TARGET}",
    )
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()

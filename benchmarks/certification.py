"""Certification throughput: ``votes.predict_votes`` + ``certify.certify`` vs the raw batched forward.

M untrained ``small_cnn`` models (``build_model(..., seed=k)``, stacked with
``torch.func.stack_module_state``; weights do not change the timing) predict N embedded-MNIST test images
under K input-noise draws from ``noise.make_noise_plan(seed=0, num_models=M, sigma=0.25, num_draws=K)``.

- pipeline: ``predict_votes`` (noise regenerated from the plan, models streamed in chunks of 10) and then
  ``certify`` (Clopper-Pearson, hard votes, split selection n0 = 5, alpha = 0.001) on its output; with
  ``--draws`` K > 1 the bound is Hoeffding (``certify`` refuses Clopper-Pearson on fractional votes), and
  with fewer than 6 models n0 = M - 1 (split selection needs n0 <= M - 1);
- raw: the same M models as ordinary modules in eval mode on the same M * K * N noisy inputs, made in
  advance (channels_last on CPU), just ``model(x)`` in batches of 4096 under ``torch.no_grad``. On CUDA the
  raw figure is the faster of that loop and one ``vmap`` forward per chunk of models (both are reported).

bf16: ``pipeline_bf16`` and ``raw_loop_bf16`` are the same under bfloat16 autocast (``precision="bfloat16"``),
timed in the same interleaved rounds; their speed-ups over fp32 and fractions of the bf16 matmul ceiling
are in the summary.

ratio = raw time / pipeline time (target >= 0.75). Achieved FLOP/s: ``FlopCounterMode`` counts one
model's forward on its K * N inputs, times M. The time the pipeline spends regenerating the noise
(``noise.test_unit_noise``) and rebuilding the members (``ensemble.load_member``) is measured apart.
Timing: ``_timing`` (interleaved ``torch.utils.benchmark.Timer`` measurements; short calls are repeated
in blocks until each round has timed ``min_time / repeat`` seconds).

Usage: python benchmarks/certification.py [--quick] [--device auto|cpu|cuda] [--out PATH]

Length: a little over 350 lines once formatted by ruff (one argument per line): the pipeline, the raw
forward and their bf16 variants must be timed in the same interleaved rounds, so they live in one script.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import _stats as S  # noqa: E402
import _timing as T  # noqa: E402
import torch  # noqa: E402
from torch.func import stack_module_state  # noqa: E402

from certssb.core import ensemble, noise  # noqa: E402
from certssb.core.certify import certify  # noqa: E402
from certssb.core.models import build_model  # noqa: E402
from certssb.core.precision import autocast  # noqa: E402
from certssb.core.votes import predict_votes  # noqa: E402
from certssb.io import prepare_dataset  # noqa: E402

NAME = "certification"
TARGET = ">=0.75 of the raw batched forward throughput"
ARCH = "small_cnn"
BATCH = 4096
MODEL_CHUNK = 10


def stacked_artifact(m: int, in_shape, num_classes: int) -> dict:
    """The dict ``predict_votes`` expects (the required keys of ``certssb.core.artifacts.ModelArtifact``)."""
    models = [build_model(ARCH, in_shape, num_classes, seed=k) for k in range(m)]
    params, _ = stack_module_state(models)
    return {
        "architecture": ARCH,
        "in_shape": list(in_shape),
        "num_classes": num_classes,
        "params": {k: v.detach().clone() for k, v in params.items()},
        "model_indices": torch.arange(m),
    }


def main(argv: list[str] | None = None) -> dict:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--models", type=int, default=None, help="M (default 20, quick 8; at least 2)")
    p.add_argument("--samples", type=int, default=None, help="N test samples (default 500, quick 200)")
    p.add_argument("--draws", type=int, default=1, help="K input-noise draws per model (default 1)")
    p.add_argument(
        "--diag-batch",
        type=int,
        default=128,
        help="also time the raw loop with this batch size (diagnostic, not the reference; 0: off)",
    )
    p.add_argument("--data-root", default=str(C.DEFAULT_DATA_ROOT))
    args = p.parse_args(argv)
    dev = C.setup(args)
    m = args.models or (8 if args.quick else 20)
    n = args.samples or (200 if args.quick else 500)
    k_draws = args.draws
    repeat = args.repeat or (3 if args.quick else 5)
    min_time = 0.5 if args.quick else 2.0  # timed seconds per function at least, over all rounds
    torch.manual_seed(0)

    result, ceiling, c_ref = C.start_result(NAME, TARGET, args, dev)

    data = prepare_dataset("mnist_embedded", root=args.data_root)
    x, labels, c = data["x_test"][:n].contiguous(), data["y_test"][:n].contiguous(), data["num_classes"]
    in_shape = tuple(x.shape[1:])
    sigma = torch.full((n,), 0.25)
    plan = noise.make_noise_plan(
        seed=0,
        num_models=m,
        sigma=0.25,
        num_draws=k_draws,
        n_train=data["x_train"].shape[0],
        input_shape=in_shape,
    )
    art = stacked_artifact(m, in_shape, c)

    # ---- pipeline: predict_votes + certify
    def votes_fn() -> dict:
        return predict_votes(
            art, x, sigma, plan, "clean", device=dev, model_chunk=MODEL_CHUNK, batch_size=BATCH
        )

    out = votes_fn()

    cert_kw = {
        "bound": "clopper_pearson" if k_draws == 1 else "hoeffding",
        "aggregation": "hard",
        "alpha": 0.001,
        "selection": "split",
        "n0": max(1, min(5, m - 1)),
    }

    def certify_votes(o: dict):
        return certify(
            o["votes"].numpy(),
            o["probs"].numpy(),
            sigma.numpy(),
            labels=labels.numpy(),
            num_classes=c,
            **cert_kw,
        )

    def certify_fn():
        return certify_votes(out)

    def pipeline_fn():
        return certify_votes(votes_fn())

    def pipeline_bf16_fn():  # the same models' forward passes under bfloat16 autocast (core.precision)
        return certify_votes(
            predict_votes(
                art,
                x,
                sigma,
                plan,
                "clean",
                device=dev,
                model_chunk=MODEL_CHUNK,
                batch_size=BATCH,
                precision="bfloat16",
            )
        )

    # ---- raw: the same models on pre-made noisy inputs
    nets = []
    for j in range(m):
        net = ensemble.load_member(ARCH, in_shape, c, art["params"], j, dev)
        if dev.type == "cpu":
            net = net.to(memory_format=torch.channels_last)
        nets.append(net)
    fmt = torch.channels_last if dev.type == "cpu" else torch.contiguous_format
    noisy = [
        (
            x.to(dev).unsqueeze(0)
            + sigma.to(dev).view(1, n, 1, 1, 1) * noise.test_unit_noise(plan, j, "clean", n, dev)
        )
        .flatten(0, 1)
        .contiguous(memory_format=fmt)
        for j in range(m)
    ]  # M tensors of (K*N, C, H, W)

    @torch.no_grad()
    def raw_loop() -> None:
        for j in range(m):
            for b in range(0, noisy[j].shape[0], BATCH):
                nets[j](noisy[j][b : b + BATCH])

    @torch.no_grad()
    def raw_loop_small_batch() -> None:  # diagnostic only: a cache-sized batch on CPU
        for j in range(m):
            for b in range(0, noisy[j].shape[0], args.diag_batch):
                nets[j](noisy[j][b : b + args.diag_batch])

    @torch.no_grad()
    def raw_loop_bf16() -> None:  # the bf16 reference: the raw loop under autocast
        with autocast("bfloat16", dev):
            raw_loop()

    variants = {"raw_loop": raw_loop}
    if dev.type == "cuda":
        template = ensemble.member_module(ARCH, in_shape, c)
        params_dev = {k: v.to(dev) for k, v in art["params"].items()}
        stacked_inputs = torch.stack(noisy)  # (M, K*N, C, H, W)

        @torch.no_grad()
        def raw_vmap() -> None:
            per = max(1, BATCH // k_draws) * k_draws
            for s in range(0, m, MODEL_CHUNK):
                ch = slice(s, min(s + MODEL_CHUNK, m))
                pc = {k: v[ch] for k, v in params_dev.items()}
                for b in range(0, stacked_inputs.shape[1], per):
                    ensemble.stacked_forward(template, pc, stacked_inputs[ch, b : b + per])

        variants["raw_vmap"] = raw_vmap

    # ---- pieces of the pipeline measured apart
    def noise_fn() -> None:
        for j in range(m):
            noise.test_unit_noise(plan, j, "clean", n, dev)

    def load_fn() -> None:
        for j in range(m):
            ensemble.load_member(ARCH, in_shape, c, art["params"], j, dev)

    with torch.no_grad():
        f_model = C.count_flops(lambda: nets[0](noisy[0]))
    flops = f_model * m

    # the pipeline and the raw forward(s) in interleaved rounds, then the pieces
    diag = {"diagnostic_raw_loop_small_batch": raw_loop_small_batch} if args.diag_batch else {}
    per_round = min_time / repeat  # each round's Timer measurement times at least this long
    bf16 = {"pipeline_bf16": pipeline_bf16_fn, "raw_loop_bf16": raw_loop_bf16}
    res, _ = T.bench_interleaved(
        {"pipeline": pipeline_fn, **variants, **bf16, **diag}, dev, repeat=repeat, min_run_time=per_round
    )
    pieces, _ = T.bench_interleaved(
        {
            "predict_votes": votes_fn,
            "certify": certify_fn,
            "noise_regeneration": noise_fn,
            "load_member": load_fn,
        },
        dev,
        repeat=repeat,
        min_run_time=per_round,
    )
    res.update(pieces)
    raw_name = min(variants, key=lambda v: res[v]["best_s"])
    raw_s = res[raw_name]["best_s"]
    evals = m * k_draws * n
    for name in ("pipeline", "predict_votes", *variants, *bf16, *diag):
        res[name].update(S.achieved(flops, res[name]["best_s"], c_ref))
        res[name]["model_evaluations_per_second"] = evals / res[name]["best_s"]
        res[name]["certified_samples_per_second"] = n / res[name]["best_s"]
    for name in ("certify", "noise_regeneration", "load_member"):
        res[name]["fraction_of_pipeline_time"] = res[name]["best_s"] / res["pipeline"]["best_s"]

    if diag:
        res["diagnostic_raw_loop_small_batch"].update(
            {
                "batch_size": args.diag_batch,
                "speedup_over_raw_reference": S.paired_ratio(
                    res[raw_name], res["diagnostic_raw_loop_small_batch"]
                )["median_of_rounds"],
                "note": f"not the reference: the raw loop with batch {args.diag_batch} instead of {BATCH}",
            }
        )
    c_ref = C.finish_ceiling(ceiling, dev, quick=args.quick)
    S.set_fractions(res, c_ref)
    S.set_fractions(res, ceiling["reference_bf16_gflops"], "fraction_of_bf16_ceiling")
    C.print_ceiling(ceiling)
    pr = S.paired_ratio(res[raw_name], res["pipeline"])
    ratio = pr["median_of_rounds"]
    result["workload"] = {
        "dataset": "mnist_embedded test split",
        "models": m,
        "samples": n,
        "draws": k_draws,
        "model_evaluations": evals,
        "architecture": ARCH,
        "weights": "untrained, seeds 0..M-1",
        "sigma": 0.25,
        "batch_size": BATCH,
        "model_chunk": MODEL_CHUNK,
        "certify": cert_kw,
        "flops_per_model_forward": f_model,
        "flops_total": flops,
        "raw_reference": raw_name,
        "repeat": repeat,
        "min_timed_s_per_measurement": min_time,
        "min_timed_s_per_round": per_round,
        "extrapolated": False,
    }
    result["results"] = res
    result["summary"] = {
        "ratio_pipeline_over_raw": ratio,
        "ratio_of_best_runs": pr["of_best"],
        "clean_rounds": f"{pr['clean_rounds']}/{pr['rounds']}",
        "note": "ratio = throughput of the pipeline / of the raw forward = t_raw / t_pipeline, "
        "median over the uncontended interleaved rounds",
        "ratio_predict_votes_over_raw": raw_s / res["predict_votes"]["best_s"],
        "target": TARGET,
        "target_met": ratio >= 0.75,
        "pipeline_fraction_of_ceiling": res["pipeline"]["fraction_of_ceiling"],
        "raw_fraction_of_ceiling": res[raw_name]["fraction_of_ceiling"],
        "speedup_bf16_over_fp32_pipeline": S.paired_ratio(res["pipeline"], res["pipeline_bf16"])[
            "median_of_rounds"
        ],
        "speedup_bf16_over_fp32_raw_loop": S.paired_ratio(res["raw_loop"], res["raw_loop_bf16"])[
            "median_of_rounds"
        ],
        "ratio_pipeline_bf16_over_raw_bf16": S.paired_ratio(res["raw_loop_bf16"], res["pipeline_bf16"])[
            "median_of_rounds"
        ],
        "pipeline_bf16_fraction_of_bf16_ceiling": res["pipeline_bf16"]["fraction_of_bf16_ceiling"],
        "matmul_bf16_over_fp32": ceiling["bf16_over_fp32"],
    }
    path = C.write_json(result, args.out or C.default_out(NAME, dev))

    rows = []
    for name in (
        "pipeline",
        "predict_votes",
        *variants,
        *bf16,
        *diag,
        "certify",
        "noise_regeneration",
        "load_member",
    ):
        r = res[name]
        rows.append(
            {
                "part": name,
                "best_s": r["best_s"],
                "median_s": r["median_s"],
                "evals/s": r.get("model_evaluations_per_second"),
                "GFLOP/s": r.get("gflops"),
                "frac_ceiling": r.get("fraction_of_ceiling"),
                "frac_bf16": r.get("fraction_of_bf16_ceiling"),
                "share_of_pipeline": r.get("fraction_of_pipeline_time"),
                "vs_raw": ratio
                if name == "pipeline"
                else (raw_s / r["best_s"] if name == "predict_votes" else None),
                "peak_MiB": r["peak_memory_mib"],
            }
        )
    for row in rows:
        row["part"] = row["part"].replace(
            "diagnostic_raw_loop_small_batch", f"raw_loop b{args.diag_batch} (diag)"
        )
    C.print_table(
        rows,
        [
            "part",
            "best_s",
            "median_s",
            "evals/s",
            "GFLOP/s",
            "frac_ceiling",
            "frac_bf16",
            "share_of_pipeline",
            "vs_raw",
            "peak_MiB",
        ],
        title=f"{NAME} on {dev.type}: M={m}, N={n}, K={k_draws}; target {TARGET}",
    )
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()

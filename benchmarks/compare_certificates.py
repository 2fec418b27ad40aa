"""Compare the certificate tables of two checkouts' latest runs, column by column (bit for bit).

Used to check that a refactor leaves the certificates unchanged: run ``kedro run`` with the same parameters
and seed in both checkouts, then

    python benchmarks/compare_certificates.py OLD_CHECKOUT NEW_CHECKOUT

Checkouts from before the sound-certificate change (issue 10) name the columns differently: their
``radius`` is today's ``radius_published`` (sigma_x * R1) and their ``conservative_radius`` is today's
``radius`` (sigma_min * R1); the mapping is applied when the old table has ``conservative_radius``.
Exits 1 when a column differs.
"""

from __future__ import annotations

import glob
import sys

import numpy as np
import pandas as pd

SAME = ("label", "prediction", "p_lower_a", "p_upper_b", "sigma", "abstained")


def latest(root: str, method: str) -> pd.DataFrame:
    paths = sorted(glob.glob(f"{root}/data/07_model_output/{method}/certificates.csv/*/certificates.csv"))
    if not paths:
        raise SystemExit(
            f"no {method}.certificates under {root}/data/07_model_output: run `kedro run` there first"
        )
    return pd.read_csv(paths[-1]).sort_values(["split", "sample_id"]).reset_index(drop=True)


def compare(old: pd.DataFrame, new: pd.DataFrame) -> list[tuple[str, str, bool]]:
    pairs = [(c, c) for c in SAME]
    if "conservative_radius" in old.columns:
        pairs += [("radius", "radius_published"), ("conservative_radius", "radius")]
    else:
        pairs += [("radius", "radius"), ("radius_published", "radius_published")]
    return [
        (a, b, len(old) == len(new) and np.array_equal(old[a].to_numpy(), new[b].to_numpy()))
        for a, b in pairs
    ]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    ok = True
    for method in ("uniform", "cert_ssb"):
        old, new = latest(argv[0], method), latest(argv[1], method)
        print(f"{method}: {len(old)} vs {len(new)} rows")
        for a, b, same in compare(old, new):
            ok &= same
            print(f"  {a:20s} vs {b:17s} {'identical' if same else 'DIFFERENT'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

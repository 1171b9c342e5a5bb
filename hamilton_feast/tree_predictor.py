"""One prediction at a time, fast: the trees of a fitted scikit-learn
`HistGradientBoostingRegressor` walked by a small compiled kernel.

scikit-learn's `predict` is built for many rows: on one row it spends about a millisecond on
checking the input and on one call per tree, the trees themselves a few microseconds. A
prediction server asks one row at a time, so `row_predictor` copies the trees into flat arrays
once and walks them with a numba kernel (compiled once per environment and cached beside this
file), adding the leaves in scikit-learn's order from its baseline, so the answers are its own to
the bit. Before it is used, it is checked against scikit-learn's `predict` on rows that reach
every split of every tree and take it each way: any difference, and it is refused.

A model it does not cover (another estimator, categorical splits, several trees per iteration)
is served by scikit-learn's own `predict`, slower and the same: `RowPredictor.kind` says which.
"""

from dataclasses import dataclass
from typing import Callable

import numba
import numpy as np


@numba.njit(cache=True)
def _sum_of_leaves(row, baseline, roots, feature, threshold, missing_left, left, right, leaf, value):
    """The baseline plus each tree's leaf for `row`, added in tree order (scikit-learn's): a
    missing value goes where the split sent the training rows without it, a value at most the
    threshold to the left."""
    total = baseline
    for root in roots:
        node = root
        while not leaf[node]:
            x = row[feature[node]]
            if np.isnan(x):
                node = left[node] if missing_left[node] else right[node]
            elif x <= threshold[node]:
                node = left[node]
            else:
                node = right[node]
        total += value[node]
    return total


@dataclass(frozen=True)
class RowPredictor:
    """A model's prediction for one row of its input columns (float64, NaN where missing)."""

    predict: Callable[[np.ndarray], float]
    kind: str  # "compiled trees" or "scikit-learn"

    def __call__(self, row: np.ndarray) -> float:
        return self.predict(row)


def _trees(model) -> tuple | None:
    """The model's trees as flat arrays (children numbered across all trees), or None when the
    kernel does not cover the model."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    if not isinstance(model, HistGradientBoostingRegressor) or model.n_trees_per_iteration_ != 1:
        return None
    nodes = [trees[0].nodes for trees in model._predictors]
    if any(n["is_categorical"].any() for n in nodes):
        return None
    roots = np.cumsum([0] + [len(n) for n in nodes[:-1]]).astype(np.int64)
    flat = np.concatenate(nodes)
    shift = np.repeat(roots, [len(n) for n in nodes])
    return (float(model._baseline_prediction.ravel()[0]), roots, flat["feature_idx"].astype(np.int64),
            flat["num_threshold"].astype(np.float64), flat["missing_go_to_left"].astype(np.bool_),
            flat["left"].astype(np.int64) + shift, flat["right"].astype(np.int64) + shift,
            flat["is_leaf"].astype(np.bool_), flat["value"].astype(np.float64))


def row_predictor(model) -> RowPredictor:
    """A fast one-row predictor for `model`, checked against its `predict` on rows that reach
    every split of every tree with the value at its threshold, the float just above it and a
    missing value; ValueError naming the first row that differs."""
    predict_many = lambda rows: model.predict(_named(model, rows))  # noqa: E731
    trees = _trees(model)
    if trees is None:
        return RowPredictor(lambda row: float(predict_many(row[np.newaxis, :])[0]), "scikit-learn")
    inverse = model._loss.link.inverse
    compiled = RowPredictor(lambda row: float(inverse(np.array([_sum_of_leaves(row, *trees)]))[0]), "compiled trees")
    checks = _rows_through_every_split(model)
    expected = predict_many(checks)
    for row, wanted in zip(checks, expected):
        if compiled(row) != wanted:
            raise ValueError(f"the compiled trees predict {compiled(row)!r} for the row {row.tolist()} where "
                             f"scikit-learn predicts {wanted!r}: not serving them")
    return compiled


def _rows_through_every_split(model) -> np.ndarray:
    """For each split of each of the estimator's own trees, rows that reach it and take it both
    ways: the value at its threshold, the float just above it, and (where no split above it
    reads the same feature) a missing value. Features no split on the way reads are 0."""
    rows = []
    for trees in model._predictors:
        nodes = trees[0].nodes
        stack = [(0, np.full(model.n_features_in_, -np.inf), np.full(model.n_features_in_, np.inf))]
        while stack:
            i, low, high = stack.pop()  # the values reaching node i: low < x <= high
            node = nodes[i]
            if node["is_leaf"]:
                continue
            f, cut = node["feature_idx"], node["num_threshold"]
            base = np.where(np.isfinite(high), high, np.where(np.isfinite(low), np.nextafter(low, np.inf), 0.0))
            for value in (cut, np.nextafter(cut, np.inf)) + ((np.nan,) if np.isinf([low[f], high[f]]).all() else ()):
                if np.isnan(value) or low[f] < value <= high[f]:
                    rows.append(base.copy())
                    rows[-1][f] = value
            left_high, right_low = high.copy(), low.copy()
            left_high[f], right_low[f] = min(high[f], cut), max(low[f], cut)
            stack += [(node["left"], low, left_high), (node["right"], right_low, high)]
    return np.array(rows)


def _named(model, rows: np.ndarray):
    """Rows under the model's column names, when it was fit on named columns (as scikit-learn
    expects them back)."""
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return rows
    import pandas as pd

    return pd.DataFrame(rows, columns=names)

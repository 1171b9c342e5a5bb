"""hamilton_feast.tree_predictor: one row at a time, the same answers as scikit-learn's predict,
to the bit, or scikit-learn's own predict, or a refusal."""

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression

from hamilton_feast import tree_predictor


def training_rows(rows: int = 4000, seed: int = 3) -> tuple[pd.DataFrame, pd.Series]:
    """Named float columns, one of them often missing and one boolean-like, and a target that
    depends on them and on whether the missing one is missing."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({"a": rng.normal(size=rows), "b": rng.exponential(size=rows),
                      "c": rng.normal(size=rows), "flag": rng.integers(0, 2, rows).astype("float64")})
    x.loc[rng.random(rows) < 0.2, "c"] = np.nan
    y = 2 * x.a + np.log1p(x.b) + x.c.fillna(3.0) + x.flag + rng.normal(scale=0.1, size=rows)
    return x, y


@pytest.mark.parametrize("loss", ["squared_error", "absolute_error", "poisson"])
def test_compiled_trees_predict_what_scikit_learn_predicts_to_the_bit(loss):
    x, y = training_rows()
    target = np.exp(y / 4) if loss == "poisson" else y
    model = HistGradientBoostingRegressor(max_iter=120, loss=loss, random_state=0).fit(x, target)
    predict = tree_predictor.row_predictor(model)
    assert predict.kind == "compiled trees"
    unseen, _ = training_rows(rows=1500, seed=4)
    unseen.iloc[::5] = np.nan  # whole rows missing too
    expected = model.predict(unseen)
    got = np.array([predict(row) for row in unseen.to_numpy()])
    assert np.array_equal(got, expected)


def test_a_model_the_kernel_does_not_cover_is_served_by_scikit_learn():
    x, y = training_rows()
    model = LinearRegression().fit(x.fillna(0.0), y)
    predict = tree_predictor.row_predictor(model)
    assert predict.kind == "scikit-learn"
    rows = x.fillna(0.0).to_numpy()[:50]  # one row at a time: BLAS may round the last bit differently
    np.testing.assert_allclose([predict(row) for row in rows], model.predict(x.fillna(0.0).iloc[:50]), rtol=1e-14)


def test_categorical_splits_are_served_by_scikit_learn():
    x, y = training_rows()
    x["flag"] = x["flag"].astype("int64")
    model = HistGradientBoostingRegressor(max_iter=30, categorical_features=[3], random_state=0).fit(x, y)
    assert tree_predictor.row_predictor(model).kind == "scikit-learn"


def one_threshold_up(trees: list) -> None:
    split = int(np.flatnonzero(~trees[7])[17])
    trees[3][split] = np.nextafter(trees[3][split], np.inf)


def one_missing_direction_flipped(trees: list) -> None:
    split = int(np.flatnonzero(~trees[7] & (trees[2] == 2))[0])  # a split on "c", the often missing one
    trees[4][split] = not trees[4][split]


def one_leaf_off(trees: list) -> None:
    trees[8][int(np.flatnonzero(trees[7])[-1])] += 1e-12


@pytest.mark.parametrize("misread", [one_threshold_up, one_missing_direction_flipped, one_leaf_off])
def test_trees_that_disagree_with_scikit_learn_are_refused(monkeypatch, misread):
    """A kernel reading the trees wrong, by the smallest step, is caught by the rows through
    every split and refused, not served."""
    x, y = training_rows()
    model = HistGradientBoostingRegressor(max_iter=60, random_state=0).fit(x, y)
    read = tree_predictor._trees

    def misread_trees(estimator):
        trees = [part.copy() if isinstance(part, np.ndarray) else part for part in read(estimator)]
        misread(trees)
        return tuple(trees)

    monkeypatch.setattr(tree_predictor, "_trees", misread_trees)
    with pytest.raises(ValueError, match="scikit-learn predicts .*: not serving them"):
        tree_predictor.row_predictor(model)

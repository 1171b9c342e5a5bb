"""hamilton_feast.windows against brute force and pandas: every time unit, any group ids, the
same bits whatever the number of threads or however the groups are split, clear errors."""

import numba
import numpy as np
import pandas as pd
import pytest

from hamilton_feast import windows


def random_rows(seed: int, n: int = 800, groups=None, unit: str = "us") -> pd.DataFrame:
    """Rows in time order with time ties and value ties."""
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.integers(0, 10 * 3600, n) // 30 * 30)
    frame = pd.DataFrame({
        "time": (pd.Timestamp("2026-05-01", tz="UTC") + pd.to_timedelta(seconds, "s")).astype(f"datetime64[{unit}, UTC]"),
        "group": rng.choice(groups if groups is not None else np.arange(5), n),
        "value": rng.integers(1, 20, n).astype("float64"),
    })
    return frame


def brute_force(frame: pd.DataFrame, width: str) -> pd.DataFrame:
    rows = []
    for i in range(len(frame)):
        t = frame.time.iloc[i]
        window = frame.iloc[: i + 1]
        window = window[(window.time > t - pd.Timedelta(width)) & (window.group == frame.group.iloc[i])].value
        rows.append((window.mean(), len(window), window.max(), window.min()))
    return pd.DataFrame(rows, columns=["mean", "count", "max", "min"])


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("groups", [None, np.array(["north", "south", "east"]), np.array([7, 10**15])],
                         ids=["small ints", "strings", "far-apart ints"])
def test_trailing_stats_equal_brute_force_for_every_unit_and_kind_of_group(unit, groups):
    frame = random_rows(1, groups=groups, unit=unit)
    stats = windows.trailing_stats(frame.value, frame.time, "1h", by=frame.group)
    expected = brute_force(frame, "1h")
    np.testing.assert_allclose(stats["mean"], expected["mean"], rtol=1e-12)
    for column in ["count", "max", "min"]:
        np.testing.assert_array_equal(stats[column].to_numpy(), expected[column].to_numpy(), column)
    assert stats.index.equals(frame.index) and stats["count"].dtype == np.int64


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_trailing_pct_rank_is_pandas_rolling_rank_for_every_unit(unit):
    frame = random_rows(2, n=3000, unit=unit)
    ranks = windows.trailing_pct_rank(frame.value, frame.time, "2h")
    by_time = pd.Series(frame.value.to_numpy(), index=pd.DatetimeIndex(frame.time))
    expected = by_time.rolling("2h").rank(pct=True).to_numpy()
    np.testing.assert_array_equal(ranks.to_numpy(), expected)


def test_the_same_bits_whatever_the_threads_and_for_a_group_computed_alone():
    """What lets a group be computed on its own (e.g. per driver on Spark) and equal the
    one-process answer exactly."""
    frame = random_rows(3, n=5000, groups=np.arange(40))
    answers = []
    default = numba.get_num_threads()
    try:
        for threads in sorted({1, default}):
            numba.set_num_threads(threads)
            answers.append((windows.trailing_stats(frame.value, frame.time, "90min", by=frame.group),
                            windows.trailing_pct_rank(frame.value, frame.time, "90min")))
    finally:
        numba.set_num_threads(default)
    for stats, ranks in answers[1:]:
        pd.testing.assert_frame_equal(stats, answers[0][0], check_exact=True)
        pd.testing.assert_series_equal(ranks, answers[0][1], check_exact=True)
    alone = frame[frame.group == 17]
    own = windows.trailing_stats(alone.value, alone.time, "90min", by=alone.group)
    pd.testing.assert_frame_equal(own, answers[0][0].loc[alone.index], check_exact=True)


def test_rows_out_of_time_order_are_refused():
    frame = random_rows(4, n=50).iloc[::-1]
    with pytest.raises(ValueError, match="trailing_stats: the rows must be in time order"):
        windows.trailing_stats(frame.value, frame.time, "1h", by=frame.group)
    with pytest.raises(ValueError, match="trailing_pct_rank: the rows must be in time order"):
        windows.trailing_pct_rank(frame.value, frame.time, "1h")


def test_a_width_finer_than_the_times_unit_is_refused():
    frame = random_rows(5, n=10, unit="s")
    with pytest.raises(ValueError, match=r"a width of 1500ms is finer than the times' unit \(s\)"):
        windows.trailing_pct_rank(frame.value, frame.time, "1500ms")


def test_no_rows_give_no_rows():
    frame = random_rows(6, n=10).iloc[:0]
    assert windows.trailing_stats(frame.value, frame.time, "1h", by=frame.group).empty
    assert windows.trailing_pct_rank(frame.value, frame.time, "1h").empty

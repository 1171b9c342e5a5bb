"""Trailing time windows over rows in time order, in linear time and on every core: statistics
per group (such as each driver's trips) and a value's percentile rank among all rows.

The window of row i holds the rows j <= i, in the given order (which must be by time), whose
time is in (t_i - width, t_i]: pandas' `rolling(width)` on a time index. The answers are
pandas', and the repos' tests check them against brute force; the work is done by small numba
kernels, compiled once per environment and cached beside this file.

- per group: one pass over the rows in time order with two pointers, the row arriving and the
  oldest row still in a window, each group keeping its own window sum, count and monotonic
  queues for max and min (so a group's values do not depend on the other groups', and a group
  computed alone, e.g. on another machine, gives the same bits). Groups run in parallel, split
  by their code across threads.
- rank among all rows: a Fenwick tree over the values' dense ranks counts, as the window
  slides, how many values in it are below and equal to each row's. The rows are split into
  chunks that run in parallel, each starting from its first row's window.
"""

import numba
import numpy as np
import pandas as pd


def _times_and_width(times: pd.Series, width: str, what: str) -> tuple[np.ndarray, int]:
    """The times as int64 in their own unit (no conversion), checked to be in order, and the
    window width in that unit."""
    array = times.array
    ticks = pd.Timedelta(1, unit=array.unit).value
    width_ns = pd.Timedelta(width).value
    if width_ns % ticks:
        raise ValueError(f"{what}: a width of {width} is finer than the times' unit ({array.unit})")
    values = array.asi8
    if len(values) > 1 and (values[1:] < values[:-1]).any():
        raise ValueError(f"{what}: the rows must be in time order; sort them by time first")
    return values, width_ns // ticks


def _group_codes(by: pd.Series) -> tuple[np.ndarray, int]:
    """A code 0..groups-1 per row: the id minus the smallest for integer ids within a small
    range (no hashing), else pandas' factorize."""
    values = by.to_numpy()
    if np.issubdtype(values.dtype, np.integer) and len(values):
        low, high = int(values.min()), int(values.max())
        if high - low < min(max(4 * len(values), 1024), 2**31 - 1):
            return (values - low).astype(np.int32), high - low + 1
    codes, groups = pd.factorize(by)
    if (codes < 0).any():
        raise ValueError("trailing_stats: the groups have missing values; expected none")
    return codes.astype(np.int32), len(groups)


@numba.njit(cache=True, parallel=True)
def _group_windows(times, values, codes, groups, width, threads, mean, count, largest, smallest,
                   high, low, high_values, low_values):
    """Mean, count, max and min over each row's window within its group, the rows in time order,
    written into the given arrays; max and min only if the queues (`high`...) have a place per row.

    Two pointers over the rows in time order: the row arriving, and the oldest row still in any
    window (all groups' windows end at the same time); a row leaving is taken out of its own
    group's sum, count and monotonic queues. Both read memory in order, and a group's sum sees
    only its own rows' additions and removals, in an order set by its own times: its values
    depend on its rows alone, bit for bit. Each thread takes the groups whose code is its
    number modulo the threads.
    """
    n = len(times)
    extremes = len(high) == n
    starts = np.zeros(groups + 1, np.int64)  # each group's segment of the queue arrays
    if extremes:
        for code in codes:
            starts[code + 1] += 1
    starts = np.cumsum(starts)
    owner = np.arange(groups) % threads  # a lookup, not a division per row
    for thread in numba.prange(threads):
        window_sum, window_count = np.zeros(groups), np.zeros(groups, np.int64)
        high_head, high_tail = starts[:-1].copy(), starts[:-1].copy()  # queues of row numbers
        low_head, low_tail = starts[:-1].copy(), starts[:-1].copy()
        leaving = 0
        for row in range(n):
            while times[leaving] <= times[row] - width:
                group = codes[leaving]
                if owner[group] == thread:
                    window_sum[group] -= values[leaving]
                    window_count[group] -= 1
                    if extremes:
                        if high[high_head[group]] == leaving:
                            high_head[group] += 1
                        if low[low_head[group]] == leaving:
                            low_head[group] += 1
                leaving += 1
            group = codes[row]
            if owner[group] != thread:
                continue
            window_sum[group] += values[row]
            window_count[group] += 1
            count[row] = window_count[group]
            mean[row] = window_sum[group] / window_count[group]
            if extremes:
                while high_tail[group] > high_head[group] and high_values[high_tail[group] - 1] <= values[row]:
                    high_tail[group] -= 1
                high[high_tail[group]], high_values[high_tail[group]] = row, values[row]
                high_tail[group] += 1
                while low_tail[group] > low_head[group] and low_values[low_tail[group] - 1] >= values[row]:
                    low_tail[group] -= 1
                low[low_tail[group]], low_values[low_tail[group]] = row, values[row]
                low_tail[group] += 1
                largest[row] = high_values[high_head[group]]
                smallest[row] = low_values[low_head[group]]


def trailing_stats(
    values: pd.Series, times: pd.Series, width: str, by: pd.Series, extremes: bool = True
) -> pd.DataFrame:
    """mean and count (and max and min) of `values` over each row's trailing window of `width`
    (such as "3h") among the rows of its group `by`; indexed like `values`."""
    ticks, window = _times_and_width(times, width, "trailing_stats")
    codes, groups = _group_codes(by)
    # Without the queues the pass is bound by reading memory, which one thread does fastest.
    threads = numba.get_num_threads() if extremes else 1
    n = len(values)
    # Large arrays are allocated by numpy, not inside the kernel: numpy asks Linux for huge
    # pages, which fault in far faster than the small ones numba's allocator gets.
    columns = {"mean": np.empty(n), "count": np.empty(n, np.int64), "max": np.empty(n), "min": np.empty(n)}
    queued = n if extremes else 0  # queue entries: a row and its value
    queues = np.empty(queued, np.int64), np.empty(queued, np.int64), np.empty(queued), np.empty(queued)
    _group_windows(ticks, values.to_numpy(np.float64), codes, groups, window, threads, *columns.values(), *queues)
    if not extremes:
        del columns["max"], columns["min"]
    return pd.DataFrame(columns, index=values.index, copy=False)


@numba.njit(cache=True)
def _fenwick_add(tree, position, amount):
    position += 1
    while position < len(tree):
        tree[position] += amount
        position += position & -position


@numba.njit(cache=True)
def _fenwick_sum(tree, position):
    """The sum of the counts of positions below `position`."""
    total = 0
    while position > 0:
        total += tree[position]
        position -= position & -position
    return total


@numba.njit(cache=True, parallel=True)
def _window_ranks(ranks, times, width, distinct, chunks, result):
    """Average rank / window size of each row's value among the values of its window (the rows
    whose time is in (t - width, t]), written into `result`."""
    n = len(ranks)
    bounds = np.linspace(0, n, chunks + 1).astype(np.int64)
    for chunk in numba.prange(chunks):
        first, end = bounds[chunk], bounds[chunk + 1]
        if first == end:
            continue
        tree = np.zeros(distinct + 1, np.int32)
        left = np.searchsorted(times, times[first] - width, side="right")
        for row in range(left, first):
            _fenwick_add(tree, ranks[row], 1)
        for row in range(first, end):
            _fenwick_add(tree, ranks[row], 1)
            while times[left] <= times[row] - width:
                _fenwick_add(tree, ranks[left], -1)
                left += 1
            below = _fenwick_sum(tree, ranks[row])
            equal = _fenwick_sum(tree, ranks[row] + 1) - below  # the row itself included
            result[row] = (below + (equal + 1) / 2) / (row - left + 1)
    return result


def trailing_pct_rank(values: pd.Series, times: pd.Series, width: str) -> pd.Series:
    """Percentile rank (0-1] of each row's value among the values of its trailing window of
    `width` over all rows, ties given their average rank (pandas' `rolling().rank(pct=True)`)."""
    ticks, window = _times_and_width(times, width, "trailing_pct_rank")
    ranks, distinct = pd.factorize(values.to_numpy(np.float64), sort=True)
    if (ranks < 0).any():
        raise ValueError("trailing_pct_rank: the values have missing values; expected none")
    result = np.empty(len(ranks))  # by numpy, for huge pages (see trailing_stats)
    _window_ranks(ranks.astype(np.int64, copy=False), ticks, window, len(distinct), numba.get_num_threads(), result)
    return pd.Series(result, index=values.index, copy=False)

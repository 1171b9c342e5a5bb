"""Drift: how far the features a service served have moved from their baseline, compared from
the statistics `feast monitor run` stores.

    feast monitor run --set-baseline        # each view's statistics over its batch source: the training data
    feast monitor run --source-type log     # the same statistics over the service's serving logs
    hamilton-feast drift                    # this comparison, which Feast 0.67 does not make

Feast 0.67 computes and stores both (in the repo's feast_monitoring/ folder with the DuckDB
offline store) but compares nothing. Each feature the service serves from a feature view is
compared over the last day of serving logs:

- a number by how far its served mean moved, in standard deviations of the baseline;
- a category (a bool) by the share of values that moved between categories (the total
  variation distance of the two frequency tables);
- both by the change in the share of nulls (a feature the online store no longer holds).

Features computed at request time (on-demand views) have no batch source, hence no baseline:
they are listed as not compared.
"""

import json
import math
from dataclasses import dataclass

import pandas as pd

from feast import FeatureStore
from feast.monitoring.monitoring_service import MonitoringService

MAX_MEAN_SHIFT = 0.5  # baseline standard deviations
MAX_SHARE_CHANGE = 0.2  # of values moving between categories, or to or from null


@dataclass(frozen=True)
class FeatureDrift:
    """One served feature against its baseline."""

    service: str
    feature: str  # view:feature
    baseline: str  # its statistics, in words
    served: str
    change: str  # the measure, in words
    drifted: bool
    served_rows: int
    served_until: str  # the newest log row of the day compared


def _number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _shares(metrics: dict) -> dict[str, float]:
    """A categorical feature's share of each value among its non-null values ("other" for the
    values beyond the top ones Feast keeps)."""
    histogram = metrics.get("histogram") or {}
    histogram = json.loads(histogram) if isinstance(histogram, str) else histogram
    counts = {str(item["value"]).lower(): item["count"] for item in histogram.get("values", [])}
    counts["other"] = histogram.get("other_count", 0) or 0
    total = sum(counts.values())
    return {value: count / total for value, count in counts.items() if count} if total else {}


def _compared(baseline: dict, served: dict, max_mean_shift: float, max_share_change: float) -> tuple[str, str, str, bool]:
    """(baseline in words, served in words, the change in words, drifted) of one feature."""
    base_nulls, served_nulls = _number(baseline.get("null_rate")) or 0.0, _number(served.get("null_rate")) or 0.0
    null_change = served_nulls - base_nulls
    nulls = f", nulls {base_nulls:.0%} -> {served_nulls:.0%}" if null_change else ""
    drifted = abs(null_change) > max_share_change
    if baseline.get("feature_type") == "categorical":
        before, after = _shares(baseline), _shares(served)
        moved = sum(abs(before.get(v, 0.0) - after.get(v, 0.0)) for v in set(before) | set(after)) / 2
        words = lambda shares: ", ".join(f"{v} {s:.0%}" for v, s in sorted(shares.items()))  # noqa: E731
        return (words(before), words(after), f"{moved:.0%} of values changed category{nulls}",
                drifted or moved > max_share_change)
    mean, sd = _number(baseline.get("mean")), _number(baseline.get("stddev"))
    served_mean = _number(served.get("mean"))
    if served_mean is None or mean is None:
        shift = None
    elif sd:
        shift = (served_mean - mean) / sd
    else:
        shift = 0.0 if served_mean == mean else math.copysign(math.inf, served_mean - mean)
    change = "no values served" if shift is None else f"mean {shift:+.2f} sd"
    return (f"mean {mean:.4g}, sd {sd:.4g}" if mean is not None else "no values",
            f"mean {served_mean:.4g}" if served_mean is not None else "no values",
            change + nulls, drifted or shift is None or abs(shift) > max_mean_shift)


def _latest(rows: list[dict]) -> dict[tuple[str, str], dict]:
    """{(view, feature): its most recent metrics} of stored metric rows."""
    latest = {}
    for row in sorted(rows, key=lambda r: (str(r.get("metric_date")), str(r.get("computed_at")))):
        latest[(row["feature_view_name"], row["feature_name"])] = row
    return latest


def drift(store: FeatureStore, services: list[str] | None = None, max_mean_shift: float = MAX_MEAN_SHIFT,
          max_share_change: float = MAX_SHARE_CHANGE) -> tuple[list[FeatureDrift], list[str]]:
    """The drift of each feature the logging `services` (default: every service with a
    logging_config) served, and the features not compared (no baseline)."""
    project = store.project
    if services:
        chosen = [store.get_feature_service(name) for name in services]
        unlogged = [service.name for service in chosen if service.logging_config is None]
        if unlogged:
            raise ValueError(f"feature service {unlogged[0]} has no logging_config, so it has no serving logs to compare")
    else:
        chosen = [service for service in store.list_feature_services() if service.logging_config is not None]
        if not chosen:
            raise ValueError(f"no feature service of {project} has a logging_config: nothing is logged to compare")
    monitoring = MonitoringService(store)
    baselines = _latest(monitoring.get_baseline(project=project, data_source_type="batch"))
    served = _latest(monitoring.get_feature_metrics(project=project, data_source_type="log", granularity="daily"))
    if not baselines:
        raise ValueError(f"no baseline is stored for {project}: run `feast monitor run --set-baseline` first")
    batch_views = {view.name for view in store.list_feature_views()}
    drifts, not_compared = [], []
    for service in chosen:
        features = [(p.name, f.name) for p in service.feature_view_projections for f in p.features]
        if not any(key in served for key in features):
            raise ValueError(f"no serving-log metrics for {service.name}: log requests through it, then run "
                             "`feast monitor run --source-type log`")
        for view, feature in features:
            if view not in batch_views or (view, feature) not in baselines:
                reason = "computed at request time" if view not in batch_views else "no baseline"
                not_compared.append(f"{view}:{feature} ({reason})")
                continue
            if (view, feature) not in served:
                not_compared.append(f"{view}:{feature} (not in the serving-log metrics)")
                continue
            now = served[(view, feature)]
            words = _compared(baselines[(view, feature)], now, max_mean_shift, max_share_change)
            drifts.append(FeatureDrift(service.name, f"{view}:{feature}", *words, int(now.get("row_count") or 0),
                                       str(now.get("max_event_timestamp"))))
    return drifts, not_compared


def report(drifts: list[FeatureDrift], not_compared: list[str], max_mean_shift: float = MAX_MEAN_SHIFT,
           max_share_change: float = MAX_SHARE_CHANGE) -> str:
    """The comparison as a table, one line per feature, with what was not compared."""
    lines = []
    for service in dict.fromkeys(d.service for d in drifts):
        rows = [d for d in drifts if d.service == service]
        lines.append(f"{service}: the last day of serving logs ({rows[0].served_rows} rows, until "
                     f"{rows[0].served_until}) against the baseline")
        table = pd.DataFrame([{"feature": d.feature, "baseline": d.baseline, "served": d.served, "change": d.change,
                               "drifted": "DRIFTED" if d.drifted else "-"} for d in rows])
        lines.append(table.to_string(index=False))
    drifted = [d.feature for d in drifts if d.drifted]
    lines.append(f"{len(drifted)} of {len(drifts)} features drifted (a mean moved by more than {max_mean_shift} "
                 f"baseline sd, or more than {max_share_change:.0%} of values changed category or null)"
                 + (f": {', '.join(drifted)}" if drifted else ""))
    if not_compared:
        lines.append(f"not compared: {', '.join(not_compared)}")
    return "\n".join(lines)

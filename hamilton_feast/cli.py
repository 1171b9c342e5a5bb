"""hamilton-feast: the tools of a Hamilton feature repo, run inside the repo's folder.

    hamilton-feast changes              # the views and services a code change affects, and why
    hamilton-feast changes --check      # the same; exits 2 if anything changed (for CI review)
    hamilton-feast changes --refresh    # recompute, register and re-materialize only what changed
    hamilton-feast lineage              # every feature: its raw columns and functions
    hamilton-feast lineage trip_dist month   # what a raw column or function feeds
    hamilton-feast draw                 # redraw dag.png and lineage.png (and their .dot)
    hamilton-feast draw --check         # exit 1 if the committed pictures are not current
    hamilton-feast online --check       # is the online store empty or stale? exits 2 if so
    hamilton-feast online --reload      # reload each view's TTL window from the offline data
    hamilton-feast drift                # how far served features moved from their baseline
    hamilton-feast drift --check        # the same; exits 2 if any feature drifted
    hamilton-feast replay data/stream_trips.parquet --rate 100   # publish trips onto the repo's stream

The repo is the folder given by --repo (default: the current one): its settings.yaml lists the
modules of its Hamilton DAG (`online` and `drift` work in any Feast repo). Exit codes: 0 done,
1 error, 2 changes found (`changes --check`), an online store to reload or a stream consumer
behind (`online --check`), or a drifted feature (`drift --check`).
"""

import argparse
import os
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa

from hamilton_feast import changes, drawing, drift, feast_operations, lineage, models, online, redis_stream, script
from hamilton_feast.read_only import store_that_writes_nothing
from hamilton_feast.repo import Repo

EXIT_CHANGED = 2  # as `terraform plan -detailed-exitcode`: 1 is an error, 2 means changes


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hamilton-feast", description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2],
    )
    parser.add_argument("--repo", default=".", help="the feature repo's folder (default: here)")
    parser.add_argument("--feature-store-yaml", default="feature_store.yaml")
    commands = parser.add_subparsers(dest="command", required=True)
    changed = commands.add_parser("changes", help="what the code changed since it was registered")
    mode = changed.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help=f"exit {EXIT_CHANGED} on any change")
    mode.add_argument("--refresh", action="store_true", help="recompute only what changed")
    traced = commands.add_parser("lineage", help="field lineage, or what NAMEs feed")
    traced.add_argument("names", nargs="*", metavar="NAME", help="raw columns or functions")
    draw = commands.add_parser("draw", help="redraw the repo's pictures")
    draw.add_argument("--check", action="store_true", help="exit 1 if a picture is not current")
    online_store = commands.add_parser("online", help="check or reload the online store")
    mode = online_store.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help=f"exit {EXIT_CHANGED} if empty, incomplete or stale")
    mode.add_argument("--reload", action="store_true", help="reload each view's TTL window")
    online_store.add_argument("--max-age", type=pd.Timedelta, metavar="AGE",
                              help="stale when last loaded longer ago, e.g. '2 hours' (default: the view's TTL)")
    online_store.add_argument("--max-lag", type=pd.Timedelta, metavar="AGE", default=pd.Timedelta(online.MAX_LAG),
                              help="the stream's consumer is behind when its oldest unprocessed event arrived "
                                   f"longer ago (default: {online.MAX_LAG})")
    drifted = commands.add_parser("drift", help="served features against their baseline (after feast monitor run)")
    drifted.add_argument("--service", action="append", metavar="NAME",
                         help="a feature service (repeatable; default: every service that logs)")
    drifted.add_argument("--check", action="store_true", help=f"exit {EXIT_CHANGED} if any feature drifted")
    drifted.add_argument("--max-mean-shift", type=float, default=drift.MAX_MEAN_SHIFT, metavar="SD",
                         help="drifted when a mean moved by more baseline standard deviations (default %(default)s)")
    drifted.add_argument("--max-share-change", type=float, default=drift.MAX_SHARE_CHANGE, metavar="SHARE",
                         help="drifted when a larger share of values changed category or null (default %(default)s)")
    replay = commands.add_parser("replay", help="publish raw rows onto the repo's stream, at a rate")
    replay.add_argument("trips", type=Path, help="a parquet file of raw rows, published in event-time order")
    replay.add_argument("--rate", type=float, default=100.0, help="events a second; 0: as fast as possible (default 100)")
    replay.add_argument("--count", type=int, help="publish only the first COUNT rows (default: all)")
    replay.add_argument("--redis", default=os.environ.get(redis_stream.URL_VARIABLE, redis_stream.DEFAULT_URL),
                        help=f"the stream's Redis (default: ${redis_stream.URL_VARIABLE}, else {redis_stream.DEFAULT_URL})")
    return parser


def _traced(repo: Repo) -> lineage.Lineage:
    if repo.lineage is None:
        raise ValueError(
            f"{repo.path.name} does not trace its views (tag_code_versions: false in settings.yaml); "
            "expected a repo whose views are tagged with the code versions they derive from"
        )
    return repo.lineage


def _online(args) -> int:
    store = feast_operations.feature_store(args.repo, args.feature_store_yaml)
    if args.reload:
        online.reload(store)
    healths = online.check(store, max_age=args.max_age.to_pytimedelta() if args.max_age else None)
    healths += online.check_stream(Path(args.repo), max_lag=args.max_lag.to_pytimedelta())
    print(online.health_report(healths))
    return EXIT_CHANGED if any(health.problems for health in healths) else 0


def _drift(args) -> int:
    store = feast_operations.feature_store(args.repo, args.feature_store_yaml)
    limits = {"max_mean_shift": args.max_mean_shift, "max_share_change": args.max_share_change}
    drifts, not_compared = drift.drift(store, args.service, **limits)
    print(drift.report(drifts, not_compared, **limits))
    return EXIT_CHANGED if args.check and any(d.drifted for d in drifts) else 0


def _replay(args) -> int:
    from hamilton_feast import events

    repo = Repo(args.repo, args.feature_store_yaml)
    settings = repo.stream_settings()
    table = next(t for t in repo.saved_table_names if repo.saved_table(t, "the stream").push_sources)
    time_column = repo.saved_table(table, "the stream").time_column
    if args.rate < 0 or (args.count is not None and args.count < 1):
        raise ValueError(f"--rate {args.rate:g} --count {args.count}: expected a rate of 0 or more and a count of 1 or more")
    if not args.trips.is_file():
        raise FileNotFoundError(f"no trips to replay at {args.trips}; expected a parquet file of raw rows "
                                "(e.g. from generate_data.py --stream-days 1)")
    rows = pd.read_parquet(args.trips).sort_values(time_column, kind="stable").head(args.count)
    stream = redis_stream.RedisStream(args.redis, settings["name"], settings["group"], settings["dead_letters"])
    schema = pa.Schema.from_pandas(rows, preserve_index=False)
    seconds = stream.replay(events.encode(rows, schema), args.rate)
    print(f"published {len(rows)} rows of {args.trips} to {stream} in {seconds:.1f} s")
    return 0


def run(args) -> int:
    if args.command == "online":
        return _online(args)
    if args.command == "drift":
        return _drift(args)
    if args.command == "replay":
        return _replay(args)
    repo = Repo(args.repo, args.feature_store_yaml)
    if args.command == "draw":
        drawn = drawing.pictures(repo)
        if args.check:
            stale = drawing.outdated(drawn)
            for path in stale:
                print(f"{path} is not current: run `hamilton-feast draw` in {repo.path}", file=sys.stderr)
            return 1 if stale else 0
        for path in drawing.write(drawn):
            print(f"wrote {path}")
        return 0
    current = _traced(repo)
    if args.command == "lineage":
        names = args.names
        if not names:
            print(lineage.lineage_table(current))
            return 0
        store = feast_operations.feature_store(str(repo.path), repo.feature_store_yaml)
        print(lineage.impact_table(current, names, models_of=lambda services: models.versions_using(store, services)))
        return 0
    store = feast_operations.feature_store(str(repo.path), repo.feature_store_yaml)
    with store_that_writes_nothing(store, repo.feature_store_yaml) as reading:
        found = changes.find_changes(reading, repo)
    print(changes.changes_report(found, current, store.project))
    if args.refresh and found:
        try:
            changes.refresh(store, repo, found)
        except script.EXPECTED_ERRORS as error:
            return script.report(error)
    if args.check and found:
        print("Changes found: review them, then `hamilton-feast changes --refresh`.")
        return EXIT_CHANGED
    return 0


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    script.quiet_hamilton_errors()
    outcome = {"changes": "cannot tell what changed", "drift": "cannot tell what drifted"}.get(args.command, "nothing was done")
    try:
        exit_code = run(args)
    except script.EXPECTED_ERRORS as error:
        exit_code = script.report(error, outcome)
    script.exit_with(exit_code)


if __name__ == "__main__":
    main()

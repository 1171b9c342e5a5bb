"""Keep the features fresh from the stream of raw trips: each micro-batch runs through this repo's DAG.

    python stream.py                 # read $STREAM_REDIS_URL's stream (settings.yaml: stream:) until stopped
    python stream.py --until-idle    # ... until it has nothing more to read
    python stream.py --feature-store-yaml feature_store.redis.yaml   # with Redis online

The same modules as apply.py, functions, @check_output checks and all: a micro-batch of trips,
padded with the trips of settings.yaml's window_overlap before it (so every trailing window is
whole), goes in as the data loader's output, the saved table's node comes out, and each
driver's latest row is pushed through the view's push source to the online store; the trips and
rows are added to the raw data and the offline store every offline_every. Refused trips go to
the dead-letter stream with their reason. See docs/streaming.md.
"""

from hamilton import driver

from hamilton_feast import Repo, script, streaming


def main() -> None:
    args = streaming.arguments(__doc__)
    repo = Repo(__file__, args.feature_store_yaml)  # settings.yaml: modules, window_overlap, stream
    dag = driver.Builder().with_modules(*repo.modules, repo.table_nodes).with_config(repo.hamilton_config).build()
    streaming.run(repo, dag, args)  # per micro-batch: dag.execute([table], overrides={loader: padded trips})


if __name__ == "__main__":
    script.run(main, outcome="the stream stopped")

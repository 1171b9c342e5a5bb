"""Servers for the serving benchmark's variants that `feast serve` has no option for, each run by
gunicorn as `feast serve` runs its app (benchmarks/run.py starts them):

    gunicorn -k serving_variants.AsyncioWorker 'serving_variants:feast_app()'    # no uvloop
    gunicorn -k uvicorn_worker.UvicornWorker 'serving_variants:feast_app(cached_reads=True)'
    gunicorn -k uvicorn_worker.UvicornWorker 'serving_variants:empty_app()'

`feast_app` is Feast's own feature-server app, set up as `feast serve` sets it up, for the
repo in BENCHMARK_REPO with the yaml in BENCHMARK_FS_YAML. With `cached_reads` it answers each
distinct read from the first answer, so what is left is the cost of the server around Feast's
reads: HTTP, FastAPI, Feast's request handling, thread hand-offs and the JSON answer. The empty
app answers every request with the same small JSON on the same server stack, the floor of any
Python server here.
"""

import os

from uvicorn_worker import UvicornWorker


class AsyncioWorker(UvicornWorker):
    """Uvicorn's worker with Python's own asyncio event loop instead of uvloop (which it picks
    when uvloop is installed, as it is with Feast); the HTTP parser stays httptools."""

    CONFIG_KWARGS = {"loop": "asyncio", "http": "httptools"}


def feast_app(cached_reads: bool = False):
    from feast import FeatureStore
    from feast.feature_server import get_app
    from feast.permissions.server.utils import (
        ServerType,
        init_auth_manager,
        init_security_manager,
        str_to_auth_manager_type,
    )

    store = FeatureStore(repo_path=os.environ["BENCHMARK_REPO"], fs_yaml_file=os.environ["BENCHMARK_FS_YAML"])
    auth_type = str_to_auth_manager_type(store.config.auth_config.type)
    init_security_manager(auth_type=auth_type, fs=store)
    init_auth_manager(auth_type=auth_type, server_type=ServerType.REST, auth_config=store.config.auth_config)
    if cached_reads:
        _answer_reads_from_a_cache(store)
    return get_app(store, registry_ttl_sec=60)


def _answer_reads_from_a_cache(store) -> None:
    read, look_up, answers, services = store.get_online_features, store.get_feature_service, {}, {}

    def cached_read(**arguments):
        # A feature service is the object cached_look_up keeps, so its identity names it.
        features = arguments["features"]
        key = (tuple(features) if isinstance(features, list) else id(features), repr(arguments["entity_rows"]),
               arguments.get("full_feature_names"))
        if key not in answers:
            answers[key] = read(**arguments)
        return answers[key]

    def cached_look_up(name, allow_cache=False):
        if name not in services:
            services[name] = look_up(name, allow_cache=allow_cache)
        return services[name]

    store.get_online_features, store.get_feature_service = cached_read, cached_look_up


def empty_app():
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.get("/health")
    async def health():
        return {}

    @app.post("/get-online-features")
    async def get_online_features():
        return JSONResponse({"results": []})

    return app

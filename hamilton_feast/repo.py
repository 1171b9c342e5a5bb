"""A Hamilton feature repo as the tools see it: the folder's settings.yaml, the modules of its DAG,
and what the DAG itself tells about them.

settings.yaml (beside feature_store.yaml, which keeps the infrastructure):

    modules: [raw_data, trip_features, feast_objects]    # the DAG: modules of this folder
    inputs:                                              # the DAG's inputs
      raw_trips_path: data/raw_trips.parquet
      driver_trip_stats_ttl: 1 day
    saved_tables:                                        # table node -> the file it is saved to
      driver_trip_features: data/driver_trip_features.parquet
    tag_code_versions: true                              # the default
    window_overlap: 1 day                                # the trailing history a part of the rows needs
    spark:                                               # when the offline store is Spark
      saved_tables: {driver_trip_features: data/spark/driver_trip_features}
      time_partitions: 4 days
    stream:                                              # the stream of raw events (streaming.py)
      name: raw_trips
      group: driver_trip_features
      dead_letters: raw_trips_dead_letters
      batch_events: 1000
      batch_wait: 20 milliseconds
      allowed_lateness: 0 seconds
      offline_every: 30 seconds

An input is converted to the type the function using it declares: to a `datetime.timedelta`
from text such as "1 day", to a `pathlib.Path` resolved against this folder; a `str` is passed
as written (Feast resolves a relative FileSource path against the repo itself). `project_name`,
`repo_path` and `feature_store_yaml` are inputs too, from the folder and feature_store.yaml.

The Feast configuration (feature_store.yaml, or the file named, or the file Feast's own command
line was given) chooses the offline store; its type is the Hamilton config `feast_offline_store`,
for `@config.when` variants such as a SparkSource. With a Spark offline store, the saved tables
are computed and written by Spark (see spark.py), where the `spark:` section puts them.

A saved table is a node of its own, saved with Hamilton's `@save_to.parquet` by the node
`saved_<table>`, which returns where it wrote: what a Feast FileSource takes as its argument
(see saved_tables.py). Its columns are the key columns of the source that reads the file
(timestamp, created timestamp, the views' join keys), then the fields of the views reading that
source, each computed by the node of its name: nothing lists them by hand.
"""

import dataclasses
import importlib.util
import inspect
import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import click
import pandas as pd
import yaml
from hamilton import driver
from hamilton.io.utils import get_file_metadata

from feast import Entity, FeatureView, Project, PushSource
from feast.constants import FEAST_FS_YAML_FILE_PATH_ENV_NAME
from feast.data_source import DataSource
from hamilton_feast import feast_operations, objects, saved_tables
from hamilton_feast.lineage import CODE_VERSIONS_TAG, GRAPH_VERSION_TAG, Lineage, function_name, raw_columns
from hamilton_feast.notices import known_notices_hidden

SETTINGS_FILE = "settings.yaml"
# What a repo's functions may read from hamilton_feast.feast_operations (its nodes: the feature
# store, a training set...), which a repo's drivers add beside its modules.
FEAST_OPERATION_NODES = {name for name, function in vars(feast_operations).items() if inspect.isfunction(function)
                         and function.__module__ == feast_operations.__name__ and not name.startswith("_")}
SETTINGS_KEYS = {"modules", "inputs", "saved_tables", "tag_code_versions", "window_overlap", "spark", "stream"}
SPARK_KEYS = {"saved_tables", "time_partitions"}
# The stream's settings: {key: what it must be}; a duration's least value in words.
STREAM_KEYS = {"name": "a stream's name", "group": "a consumer group's name",
               "dead_letters": "a stream's name", "batch_events": "a whole number of 1 or more",
               "batch_wait": "longer than 0", "allowed_lateness": "0 or longer", "offline_every": "0 or longer"}
DEFAULT_FEATURE_STORE_YAML = "feature_store.yaml"
POWER_USER_MODE = "hamilton.enable_power_user_mode"  # for @resolve in feast_operations


def _import(folder: Path, name: str) -> ModuleType:
    """Module `name` of `folder`, imported as a top-level module (so the repo's own imports of it
    find the same one); a module of that name from another folder is replaced."""
    path = folder / f"{name}.py"
    if not path.is_file():
        raise ValueError(f"{SETTINGS_FILE} lists module {name!r}, but {path} does not exist")
    loaded = sys.modules.get(name)
    if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve() == path:
        return loaded
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _converted(what: str, value, typ, folder: Path):
    """A setting (`what`: where it is and its name, for errors) as the type the DAG declares."""
    if typ is timedelta and not isinstance(value, timedelta):
        try:
            return pd.Timedelta(value).to_pytimedelta()
        except ValueError as error:
            raise ValueError(f"{what} is {value!r}; expected a duration such as '1 day'") from error
    if typ is Path:
        return (folder / str(value)).resolve()
    return value


def _key_lines(node, keys: tuple = ()) -> dict[tuple, int]:
    """{path of keys: line} for every key of a composed YAML mapping, at every depth."""
    lines = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = (*keys, key.value)
            lines[path] = key.start_mark.line + 1
            lines.update(_key_lines(value, path))
    return lines


def _feature_store_yaml_in_use() -> str:
    """The store configuration Feast's command line was given (`feast -f FILE apply`), if it is
    running, or the one Feast's environment variable names; else the default."""
    context = click.get_current_context(silent=True)
    chosen = (context.obj or {}).get("FS_YAML_FILE") if context is not None else None
    chosen = chosen or os.environ.get(FEAST_FS_YAML_FILE_PATH_ENV_NAME)
    return Path(chosen).name if chosen else DEFAULT_FEATURE_STORE_YAML


@dataclasses.dataclass(frozen=True)
class SavedTable:
    """A saved table as the engines that compute it on part of the rows need it (Spark's ranges
    of time, the stream's micro-batches): where it goes, its columns, the modules they derive
    from, the one data loader they start at and the input naming its file, the Feast source
    reading it (its event time, created time) and the push sources writing through it."""

    name: str
    path: Path
    columns: list[str]
    modules: dict[str, Path]
    loader: str
    loader_input: str
    time_column: str
    created_column: str | None
    join_keys: list[str]
    push_sources: list[str]


class Repo:
    """The repo in `folder` (a path inside it, such as a script's `__file__`, will do), with the
    store configuration `feature_store_yaml` of that folder (by default, the one in use)."""

    def __init__(self, folder, feature_store_yaml: str | None = None):
        folder = Path(folder).resolve()
        self.path = folder.parent if folder.is_file() else folder
        self.feature_store_yaml = feature_store_yaml or _feature_store_yaml_in_use()
        settings = self._read_settings()
        store = yaml.safe_load((self.path / self.feature_store_yaml).read_text())
        self.project = store["project"]
        self.offline_store = (store.get("offline_store") or {}).get("type", "file")
        on_spark = self.offline_store == "spark"
        if on_spark and not settings.get("spark"):
            raise ValueError(
                f"{self.feature_store_yaml} has a Spark offline store, but {SETTINGS_FILE} has no "
                f"`spark:` section; expected where Spark saves the tables ({sorted(SPARK_KEYS)})"
            )
        table_paths = (settings["spark"] if on_spark else settings).get("saved_tables") or {}
        if str(self.path) not in sys.path:
            sys.path.insert(0, str(self.path))
        self.modules = [_import(self.path, name) for name in settings["modules"]]
        tables = {table: saved_tables.saver_name(table) for table in table_paths}
        self.saved_table_paths = {  # saver node -> file (or folder, on Spark)
            saver: (self.path / table_paths[table]).resolve() for table, saver in tables.items()
        }

        # The DAG of the repo's own modules: which nodes return Feast objects, what its inputs
        # are, and (executed, reading no data) the definitions themselves.
        dag = driver.Builder().with_modules(*self.modules).with_config(self.hamilton_config).build()
        variables = {v.name: v for v in dag.list_available_variables()}
        self.feast_object_nodes = sorted(
            name for name, v in variables.items()
            if not v.is_external_input and objects.is_feast_object_type(v.type)
        )
        self.inputs = self._inputs(settings.get("inputs") or {}, variables)
        self._check_every_input_is_given(variables, table_paths)
        with known_notices_hidden():
            definitions = dag.execute(
                self.feast_object_nodes, inputs={**self.inputs, **self.saved_tables_as_configured()}
            )
        # Refuse broken definitions (another project, an unknown entity, a feature tagged for a
        # view that does not exist) before anything runs.
        objects.repo_contents(definitions.values(), self.project)
        objects.check_view_tags(variables.values(), definitions.values())

        # The module of the saved tables' nodes, for the driver: .with_modules(repo.saved_tables).
        # The pandas one also traces the lineage, which runs through the table's columns.
        self._declared_fields = {  # saver -> {field: (view, Feast type)} of the views reading its table
            saver: {f.name: (view.name, f.dtype) for view in self._readers(saver, definitions)[1] for f in view.features}
            for saver in tables.values()
        }
        columns = {table: self._columns(saver, definitions, variables) for table, saver in tables.items()}
        local_tables = saved_tables.module(
            {table: (self.saved_table_paths[saver], columns[table]) for table, saver in tables.items()}
        )
        full_dag = (driver.Builder().with_modules(*self.modules, local_tables)
                    .with_config(self.hamilton_config).build())
        self.saved_tables = local_tables
        self.table_nodes = local_tables  # computed in this process, whatever the offline store (the stream's)
        self._table_facts = (tables, columns, definitions, full_dag)
        self.window_overlap = self._duration(settings, ("window_overlap",), "0 or longer", required=False)
        self.stream = self._stream_settings(settings["stream"]) if "stream" in settings else None
        if on_spark:
            self.saved_tables = self._spark_tables(settings["spark"])
        self.lineage = None
        if settings.get("tag_code_versions", True):
            self.lineage = Lineage(full_dag, definitions, code_dir=self.path)

    def _inputs(self, settings: dict, variables: dict) -> dict:
        """The DAG's inputs: the repo's own, then settings.yaml's, as the DAG's types."""
        inputs = {
            "project_name": self.project,
            "repo_path": str(self.path),
            "feature_store_yaml": self.feature_store_yaml,
        }
        settable = self._settable_inputs(variables)
        for name, value in settings.items():
            where = f"{self._where('inputs', name)}: input {name!r}"
            if name in inputs:
                raise ValueError(f"{where} is set by the repo itself (from the folder and "
                                 f"{self.feature_store_yaml}); remove it")
            if name not in settable:
                raise ValueError(f"{where} is used by no function of the DAG; expected one of: "
                                 f"{', '.join(settable) or '(none)'}")
            inputs[name] = _converted(where, value, variables[name].type, self.path)
        return inputs

    def _settable_inputs(self, variables: dict) -> list[str]:
        """The DAG's inputs a user sets in settings.yaml: not the repo's own, not its Hamilton
        config (the offline store's type), not the nodes of feast_operations a driver adds (the
        feature store, a training set), not the files the saved tables are written to
        (saved_<table>, which the savers give)."""
        own = {"project_name", "repo_path", "feature_store_yaml", *self.hamilton_config, *FEAST_OPERATION_NODES}
        return sorted(name for name, v in variables.items() if v.is_external_input and name not in own
                      and not name.startswith(saved_tables.saver_name("")))

    def _check_every_input_is_given(self, variables: dict, table_paths: dict) -> None:
        """Each input a function of the DAG needs is given: by the repo, by settings.yaml's
        inputs, or, for saved_<table>, by settings.yaml's saved_tables; an error naming the
        functions that read it and where to give it, before anything runs."""
        given = set(self.inputs) | set(self.saved_table_paths) | set(self.hamilton_config) | FEAST_OPERATION_NODES
        for name, v in sorted(variables.items()):
            readers = sorted(function_name(n.originating_functions[0]) for n in variables.values()
                             if name in n.required_dependencies and n.originating_functions)
            if not v.is_external_input or name in given or not readers:
                continue
            table = name.removeprefix(saved_tables.saver_name(""))
            if name != table:
                raise ValueError(
                    f"{', '.join(readers)} read {name!r}, where the table {table!r} is saved, but "
                    f"{self._where('saved_tables')}: saved_tables: has no {table!r} (it lists: "
                    f"{', '.join(table_paths) or 'nothing'}); expected the table's name, with its file")
            extractors = sorted({function_name(variables[n].originating_functions[0]) for n in raw_columns(variables)})
            raise ValueError(
                f"{', '.join(readers)} read {name!r}, which no function of the DAG computes and "
                f"{SETTINGS_FILE} does not set: if it is a raw column, add it to the columns "
                f"{' or '.join(extractors) or 'a data loader'} extracts; if it is a setting, add it "
                f"under inputs: in {SETTINGS_FILE}")

    def _read_settings(self) -> dict:
        """settings.yaml, checked key by key; each key's line kept for the errors that name it."""
        path = self.path / SETTINGS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; expected this repo's settings")
        text = path.read_text()
        try:
            settings = yaml.safe_load(text) or {}
            self._setting_lines = _key_lines(yaml.compose(text))
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f"{SETTINGS_FILE} line {mark.line + 1}" if mark else SETTINGS_FILE
            problem = getattr(error, "problem", None) or str(error)
            raise ValueError(f"{where}: not valid YAML ({problem}); see {path}") from None
        if not isinstance(settings, dict):
            raise ValueError(f"{path} holds a {type(settings).__name__}; expected keys {sorted(SETTINGS_KEYS)}")
        unknown = sorted(set(settings) - SETTINGS_KEYS)
        if unknown:
            raise ValueError(f"{self._where(unknown[0])}: unknown key {unknown[0]!r}; expected one of "
                             f"{sorted(SETTINGS_KEYS)}")
        if not settings.get("modules"):
            raise ValueError(f"{self._where('modules')}: lists no modules; expected the modules of the Hamilton DAG")
        unknown = sorted(set(settings.get("spark") or {}) - SPARK_KEYS)
        if unknown:
            raise ValueError(f"{self._where('spark', unknown[0])}: unknown key {unknown[0]!r} under spark:; "
                             f"expected one of {sorted(SPARK_KEYS)}")
        for key in ("inputs", "saved_tables"):
            if not isinstance(settings.get(key) or {}, dict):
                raise ValueError(f"{self._where(key)}: {key}: holds a {type(settings[key]).__name__}; expected "
                                 "names, each with its value on its own indented line")
        return settings

    def _where(self, *keys: str) -> str:
        """'settings.yaml line N' for a key (a path of keys, such as 'inputs', 'x')."""
        line = self._setting_lines.get(keys)
        return f"{SETTINGS_FILE} line {line}" if line else SETTINGS_FILE

    def _duration(self, settings: dict, keys: tuple, least: str, required: bool = True) -> timedelta | None:
        """The duration at `keys` of the settings (e.g. ("spark", "time_partitions")), at least
        `least` ("longer than 0" or "0 or longer"); None if absent and not required."""
        setting = settings
        for key in keys:
            setting = (setting or {}).get(key)
        what = f"{self._where(*keys) if setting is not None else SETTINGS_FILE}: {': '.join(keys)}"
        if setting is None and not required:
            return None
        duration = _converted(what, setting, timedelta, self.path) if setting is not None else None
        if duration is None or duration < timedelta(0) or (least == "longer than 0" and not duration):
            raise ValueError(f"{what} is {setting!r}; expected a duration {least}, such as '1 day'")
        return duration

    def overlap_for(self, needed_by: str) -> timedelta:
        """window_overlap, which `needed_by` (e.g. "the `spark:` section") needs."""
        if self.window_overlap is None:
            raise ValueError(f"{SETTINGS_FILE} has no window_overlap, which {needed_by} needs; expected the "
                             "longest trailing window of the features, such as '1 day'")
        return self.window_overlap

    def _spark_tables(self, settings: dict) -> ModuleType:
        """The saved tables' nodes computed by Spark: each runs the modules its columns derive
        from, from the data loader's file, over ranges of its source's event time."""
        from hamilton_feast import spark  # pyspark, only where Spark is configured

        partitions = self._duration({"spark": settings}, ("spark", "time_partitions"), "longer than 0")
        overlap = self.overlap_for("the `spark:` section")
        specs = {}
        for table in self._table_facts[0]:
            spec = self.saved_table(table, "Spark")
            specs[table] = {"path": spec.path, "columns": spec.columns, "modules": spec.modules, "loader": spec.loader,
                            "loader_input": spec.loader_input, "time_column": spec.time_column}
        return spark.module(specs, time_partitions=partitions, window_overlap=overlap,
                            feature_store_yaml=self.feature_store_yaml)

    @property
    def saved_table_names(self) -> list[str]:
        return list(self._table_facts[0])

    def stream_settings(self) -> dict:
        """The `stream:` section of settings.yaml, checked; an error if there is none."""
        if self.stream is None:
            raise ValueError(f"{SETTINGS_FILE} has no `stream:` section; expected the stream's settings "
                             f"({', '.join(STREAM_KEYS)})")
        return self.stream

    def saved_table(self, table: str, engine: str) -> SavedTable:
        """What `engine` ("Spark", "the stream") needs to compute `table` on part of its rows;
        an error naming the table if it does not derive from exactly one data loader."""
        tables, columns, definitions, dag = self._table_facts
        if table not in tables:
            raise ValueError(f"{SETTINGS_FILE} saves no table {table!r}; it saves: {', '.join(tables) or 'none'}")
        saver = tables[table]
        nodes = {node.name: node for node in dag.list_available_variables()}
        upstream = dag.what_is_upstream_of(*columns[table])
        loaders = [n for n in upstream if n.tags.get("hamilton.data_loader") and "." not in n.name]
        if len(loaders) != 1:
            raise ValueError(f"saved table {table!r} derives from {len(loaders)} data loaders; "
                             f"expected one, whose file {engine} reads")
        loader_inputs = [name for name in nodes[f"{loaders[0].name}.loader"].required_dependencies
                         if isinstance(self.inputs.get(name), Path)]
        functions = {n.originating_functions[0] for n in upstream if n.originating_functions}
        module_files = {m.__name__: Path(m.__file__) for m in self.modules
                        if any(f.__globals__ is vars(m) for f in functions)}
        sources, views = self._readers(saver, definitions)
        entities = {o.name: o for o in definitions.values() if isinstance(o, Entity)}
        pushes = [o.name for o in definitions.values()
                  if isinstance(o, PushSource) and any(o.batch_source is s for s in sources)]
        return SavedTable(
            name=table, path=self.saved_table_paths[saver], columns=columns[table], modules=module_files,
            loader=loaders[0].name, loader_input=loader_inputs[0], time_column=sources[0].timestamp_field,
            created_column=sources[0].created_timestamp_column or None,
            join_keys=list(dict.fromkeys(entities[e].join_key for v in views for e in v.entities if e in entities)),
            push_sources=pushes,
        )

    def _stream_settings(self, settings) -> dict:
        """The `stream:` section, checked key by key: {key: value}, durations as timedelta."""
        if not isinstance(settings, dict):
            raise ValueError(f"{self._where('stream')}: stream: holds a {type(settings).__name__}; expected "
                             f"the keys {', '.join(STREAM_KEYS)}, each on its own indented line")
        unknown = sorted(set(settings) - set(STREAM_KEYS))
        if unknown:
            raise ValueError(f"{self._where('stream', unknown[0])}: unknown key {unknown[0]!r} under stream:; "
                             f"expected one of {sorted(STREAM_KEYS)}")
        typed = {}
        for key, expected in STREAM_KEYS.items():
            value = settings.get(key)
            what = f"{self._where('stream', key) if key in settings else SETTINGS_FILE}: stream: {key}"
            if expected.endswith(("than 0", "or longer")):
                typed[key] = self._duration({"stream": settings}, ("stream", key), expected)
            elif expected.startswith("a whole number"):
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError(f"{what} is {value!r}; expected {expected}")
                typed[key] = value
            elif not isinstance(value, str) or not value.strip():
                raise ValueError(f"{what} is {value!r}; expected {expected}")
            else:
                typed[key] = value
        return typed

    # --- the saved tables ---
    def _readers(self, node: str, definitions: dict) -> tuple[list[DataSource], list[FeatureView]]:
        """The Feast sources reading the table saver `node` writes, and the views reading them."""
        path = str(self.saved_table_paths[node])
        sources = [o for o in definitions.values()
                   if isinstance(o, DataSource) and getattr(o, "path", None) == path]
        views = [o for o in definitions.values()
                 if isinstance(o, FeatureView) and any(o.batch_source is s for s in sources)]
        if not sources or not views:
            raise ValueError(
                f"saved table {node!r} ({path}) is read by no Feast source of a feature view; "
                f"expected a source whose path is what {node!r} returns"
            )
        return sources, views

    def _columns(self, node: str, definitions: dict, variables: dict) -> list[str]:
        """The columns of the table saver `node` writes: the keys of the Feast source reading it,
        then the fields of the views reading that source."""
        sources, views = self._readers(node, definitions)
        entities = {o.name: o for o in definitions.values() if isinstance(o, Entity)}
        columns = []
        for source in sources:
            columns += [source.timestamp_field, source.created_timestamp_column]
        for view in views:
            columns += [entities[name].join_key for name in view.entities if name in entities]
            columns += [field.name for field in view.features]
        columns = list(dict.fromkeys(c for c in columns if c))
        for column in columns:
            if column not in variables:
                raise ValueError(
                    f"saved table {node!r} needs column {column!r}, but no node of the DAG "
                    "computes it; expected a function of that name"
                )
        return columns

    def saved_tables_as_configured(self) -> dict:
        """What each saver returns, assumed written where settings.yaml puts it: for reading the
        DAG's definitions without computing or reading any data."""
        return {node: {"file_metadata": {"path": str(path)}}
                for node, path in self.saved_table_paths.items()}

    def saved_tables_found(self) -> dict:
        """What each saver returned when it last wrote its table; an error if it never did."""
        found = {}
        for node, path in self.saved_table_paths.items():
            if not path.exists():
                raise FileNotFoundError(
                    f"no feature table at {path}: run `python apply.py` first, which computes "
                    "and saves it"
                )
            found[node] = get_file_metadata(str(path))
        return found

    def check_saved_tables_match_the_code(self) -> None:
        """Each saved table holds every field its views declare, of the declared type; else an
        error naming them: a table saved by older code, which `feast apply` would register
        views over and retrieval would then fail on (or answer with the old types)."""
        for node, path in self.saved_table_paths.items():
            schema = saved_tables.schema_of(path)
            where = path.relative_to(self.path) if path.is_relative_to(self.path) else path
            for name, (view, dtype) in self._declared_fields[node].items():
                if name not in schema.names:
                    problem = f"has no column {name!r}, which feature view {view!r} declares"
                elif not objects.arrow_type_fits(schema.field(name).type, dtype):
                    problem = (f"holds {name!r} as {schema.field(name).type}, but feature view {view!r} "
                               f"declares it {dtype}")
                else:
                    continue
                raise ValueError(f"{where} {problem}: the table was saved by older code. Run `python "
                                 "apply.py`, which computes, saves and registers it")

    def driver(self, *adapters) -> driver.Driver:
        """The driver a repo's apply.py builds: its modules, the saved tables, the Feast
        operations; with the lifecycle adapters given."""
        return (
            driver.Builder()
            .with_modules(*self.modules, self.saved_tables, feast_operations)
            .with_config(self.config)
            .with_adapters(*adapters)
            .build()
        )

    def feast_objects(self, overrides: dict | None = None) -> dict:
        """The DAG's Feast objects by node name, as a run of apply.py registers them, with the
        saved tables given (by default, those saved last); nothing is computed."""
        stand_ins = self.saved_tables_found() if overrides is None else overrides  # first: no table at all
        if overrides is None:
            self.check_saved_tables_match_the_code()
        return self.on_saved_tables(["feast_objects"], stand_ins)["feast_objects"]

    def on_saved_tables(self, outputs: list[str], stand_ins: dict | None = None) -> dict:
        """These nodes of the DAG computed with the saved tables (by default, those saved last)
        standing in for their savers: the features are read back, never recomputed."""
        dr = driver.Builder().with_modules(*self.modules, feast_operations).with_config(self.config).build()
        given = self.saved_tables_found() if stand_ins is None else stand_ins
        return dr.execute(list(outputs), inputs={**self.inputs, **given})

    # --- the driver's config ---
    @property
    def hamilton_config(self) -> dict:
        """The config the repo's own modules see: the offline store's type, for variants."""
        return {"feast_offline_store": self.offline_store}

    @property
    def config(self) -> dict:
        """The driver's config: the offline store's type, the Feast-object nodes for
        feast_operations to collect, and the code versions each view is tagged with."""
        return {
            **self.hamilton_config,
            POWER_USER_MODE: True,
            "feast_object_nodes": self.feast_object_nodes,
            "feast_object_tags": self.feast_object_tags(),
        }

    def feast_object_tags(self) -> dict[str, dict[str, str]]:
        """{node: tags to add to its Feast object}: each view gets the fingerprints of the code
        its values derive from, the project the fingerprint of the whole DAG (see lineage.py)."""
        if self.lineage is None:
            return {}
        tags = {
            self.lineage.node_of[view.name]: {
                CODE_VERSIONS_TAG: json.dumps(
                    self.lineage.code_versions(view.name), separators=(",", ":")
                )
            }
            for view in self.lineage.views()
        }
        for node, obj in self.lineage.feast_objects.items():
            if isinstance(obj, Project):
                tags[node] = {GRAPH_VERSION_TAG: self.lineage.graph_version}
        return tags

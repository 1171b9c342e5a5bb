"""Feast objects out of a Hamilton DAG: what `feast apply` would register, and the parts of a
Feast object that the DAG's functions declare (a view's fields, an on-demand UDF's source)."""

import ast
import inspect
import textwrap

import numpy as np
import pyarrow as pa
from hamilton import driver
from hamilton.function_modifiers.validation import check_output

from feast import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    LabelView,
    OnDemandFeatureView,
    Project,
    StreamFeatureView,
)
from feast.data_source import DataSource
from feast.feature_view import DUMMY_ENTITY
from feast.permissions.permission import Permission
from feast.repo_contents import RepoContents
from feast.types import Bool, Float32, Float64, Int32, Int64, String, UnixTimestamp

# RepoContents' list for each kind of object; the first matching class wins, so a
# StreamFeatureView (a FeatureView) is listed before FeatureView.
KINDS = {
    "projects": Project,
    "data_sources": DataSource,
    "entities": Entity,
    "stream_feature_views": StreamFeatureView,
    "feature_views": FeatureView,
    "on_demand_feature_views": OnDemandFeatureView,
    "label_views": LabelView,
    "feature_services": FeatureService,
    "permissions": Permission,
}
FEAST_TYPES = tuple(KINDS.values())

# The tag that puts a feature in a feature view: @tag(feast_view="driver_trip_stats").
VIEW_TAG = "feast_view"
# numpy dtype of a feature (its @check_output data_type) -> Feast type.
FEAST_TYPE_OF = {
    np.int64: Int64,
    np.int32: Int32,
    np.float64: Float64,
    np.float32: Float32,
    np.bool_: Bool,
    np.str_: String,
    np.datetime64: UnixTimestamp,
}


# Feast type of a field -> whether an arrow column type holds it (a saved table's column).
ARROW_TYPE_HOLDS = {
    Int64: pa.types.is_int64, Int32: pa.types.is_int32, Float64: pa.types.is_float64,
    Float32: pa.types.is_float32, Bool: pa.types.is_boolean,
    String: lambda t: pa.types.is_string(t) or pa.types.is_large_string(t), UnixTimestamp: pa.types.is_timestamp,
}


def arrow_type_fits(arrow_type: pa.DataType, feast_type) -> bool:
    """Whether a column of `arrow_type` holds a field of `feast_type` (types not listed here pass)."""
    holds = ARROW_TYPE_HOLDS.get(feast_type)
    return holds is None or holds(arrow_type)


def is_feast_object_type(typ) -> bool:
    return isinstance(typ, type) and issubclass(typ, FEAST_TYPES)


def _nested_sources(obj) -> list[DataSource]:
    """Data sources defined inside another object, which Feast's file parser registers too: a
    push or stream source's batch source, a view's batch and stream sources, a label view's
    source (and its batch source)."""
    nested = []
    if isinstance(obj, (FeatureView, StreamFeatureView)):
        nested += [obj.batch_source, obj.stream_source]
    if isinstance(obj, LabelView):
        nested.append(obj.source)
    for source in list(nested) + [obj]:
        if isinstance(source, DataSource):
            nested.append(getattr(source, "batch_source", None))
    return [source for source in nested if isinstance(source, DataSource) and source is not obj]


def repo_contents(objects, project_name: str) -> RepoContents:
    """Sort Feast objects into the RepoContents that `feast apply` parses from a repo's files,
    with the sources nested inside them, each object once.

    Raises TypeError for anything that is not a Feast object, and ValueError for what Feast would
    accept but should not: a project other than feature_store.yaml's, or a view whose entity
    no node defines (Feast registers such a view silently).
    """
    contents: dict[str, list] = {kind: [] for kind in KINDS}

    def add(obj) -> None:
        kind = next((k for k, cls in KINDS.items() if isinstance(obj, cls)), None)
        if kind is None:
            raise TypeError(f"{obj!r} is not a Feast object that can be applied")
        if not any(obj is known for known in contents[kind]):
            contents[kind].append(obj)

    for obj in objects:
        add(obj)
        for source in _nested_sources(obj):
            add(source)

    project_names = [project.name for project in contents["projects"]]
    if project_names != [project_name]:
        raise ValueError(
            f"the DAG defines project(s) {project_names}, but feature_store.yaml names project "
            f"{project_name!r}; they must be the same single project"
        )
    entity_names = sorted(entity.name for entity in contents["entities"])
    for kind in ("feature_views", "stream_feature_views", "on_demand_feature_views", "label_views"):
        for view in contents[kind]:
            for entity in view.entities:
                if entity not in entity_names and entity != DUMMY_ENTITY.name:
                    raise ValueError(
                        f"{view.name!r} uses entity {entity!r}, which no node of the DAG defines; "
                        f"expected one of {entity_names}: return the entity from its own function"
                    )
    contents["entities"].append(DUMMY_ENTITY)
    return RepoContents(**contents)


def check_view_tags(nodes, definitions) -> None:
    """Each function tagged @tag(feast_view=...) names a feature view the DAG defines: a
    misspelled tag would drop the feature from its view, its table and its services silently."""
    views = sorted(o.name for o in definitions if isinstance(o, FeatureView))
    for node in nodes:
        view = node.tags.get(VIEW_TAG)
        if view is not None and view not in views:
            function = node.originating_functions[0]
            raise ValueError(
                f"{function.__module__}.{function.__name__} is tagged @tag({VIEW_TAG}={view!r}), but the DAG "
                f"defines no feature view {view!r}; expected one of {views}"
            )


def _declared_dtype(function) -> type | None:
    """The data_type a function's @check_output declares, if any."""
    for modifier in getattr(function, "transform", []):
        if isinstance(modifier, check_output):
            return modifier.default_validator_kwargs.get("data_type")
    return None


def feature_fields(view: str, *modules) -> list[Field]:
    """The fields of feature view `view`: every function of the modules tagged
    `@tag(feast_view=view)`, in the order the modules define them. A field is named after its
    function, described by the first line of its docstring, and typed by its
    `@check_output(data_type=...)`.
    """
    nodes = driver.Builder().with_modules(*modules).build().list_available_variables()
    tagged = [node for node in nodes if node.tags.get(VIEW_TAG) == view]
    # In the modules' order, then in each module's; a function's globals are its module's
    # namespace (another module of the same name may be in sys.modules).
    position = {id(vars(module)): index for index, module in enumerate(modules)}
    tagged.sort(key=lambda node: (position[id(node.originating_functions[0].__globals__)],
                                  node.originating_functions[0].__code__.co_firstlineno))
    fields = []
    for node in tagged:
        function = node.originating_functions[0]
        dtype = _declared_dtype(function)
        if dtype not in FEAST_TYPE_OF:
            raise ValueError(
                f"feature {node.name!r} of view {view!r} declares data_type {dtype!r} in its "
                f"@check_output; expected one of {', '.join(t.__name__ for t in FEAST_TYPE_OF)}, "
                "which gives its Feast type"
            )
        if not node.documentation.strip():
            raise ValueError(
                f"feature {node.name!r} of view {view!r} has no docstring; expected one line "
                "describing it, which becomes its Feast description"
            )
        description = node.documentation.strip().splitlines()[0]
        fields.append(Field(name=node.name, dtype=FEAST_TYPE_OF[dtype], description=description))
    if not fields:
        found = sorted({node.tags[VIEW_TAG] for node in nodes if VIEW_TAG in node.tags})
        raise ValueError(f"no function is tagged @tag({VIEW_TAG}={view!r}); expected its features "
                         f"(the views tagged: {found or 'none'})")
    return fields


def udf_fields(udf, sources: list, mode: str = "pandas") -> list[Field]:
    """The fields of an on-demand view with this `udf`: the columns it returns, typed by running
    it on sample inputs built from the `sources`' schemas, as Feast's own inference does. So the
    UDF declares them once. (Feast infers a missing schema only after a feature service has
    copied the view's empty one, hence here, before the view is built.)"""
    probe = OnDemandFeatureView(
        name=f"{udf.__name__}_fields", sources=sources, mode=mode, udf=udf, udf_string=""
    )
    probe.infer_features()
    # In python mode Feast's inference also lists the inputs (by short and full name), which the
    # UDF does not return.
    inputs = {name for view in probe.source_feature_view_projections.values() for field in view.features
              for name in (field.name, f"{view.name_to_use()}__{field.name}")}
    inputs |= {field.name for request in probe.source_request_sources.values() for field in request.schema}
    return [field for field in probe.features if field.name not in inputs]


def udf_source(udf, *functions) -> str:
    """The source text Feast stores for an on-demand `udf`: the module-level constants the
    functions read, the functions it calls (without their Hamilton decorators), then the UDF.

    Feast rebuilds a UDF by executing its stored source with little more than pandas and numpy
    in scope, so the functions travel with it: the feature server runs the same code as the
    offline pipeline without needing the repo on its import path.
    """
    constants, parts, modules = [], [], {}
    for function in functions:
        read = _global_names(function.__code__)
        module = inspect.getmodule(function)
        if module not in modules:
            modules[module] = ast.parse(inspect.getsource(module)).body
        for statement in modules[module]:
            if isinstance(statement, ast.Assign) and read & {
                name.id for target in statement.targets for name in ast.walk(target) if isinstance(name, ast.Name)
            }:
                text = ast.unparse(statement)
                if text not in constants:
                    constants.append(text)
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
        tree.body[0].decorator_list = []
        parts.append(ast.unparse(tree))
    parts.append(inspect.getsource(udf))
    return "\n\n\n".join(["\n".join(constants)] * bool(constants) + parts)


def _global_names(code) -> set[str]:
    """The global names a function's code (and the code nested in it) reads."""
    names = set(code.co_names)
    for constant in code.co_consts:
        if inspect.iscode(constant):
            names |= _global_names(constant)
    return names

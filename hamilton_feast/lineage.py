"""Field-level lineage and code fingerprints, read from a Hamilton DAG that defines Feast objects.

For every feature (view:field) this finds the raw columns and the functions it derives from,
and the reverse: what a raw column or a function feeds. Raw columns are the columns a function
extracts (`@extract_columns`) straight from a `@dataloader`'s output, named `loader.column`;
an on-demand view's request fields are named `request_source.field`.

The functions are the DAG's nodes' functions from the repo folder, and every function they
call, transitively, that is the project's own code: defined in the repo folder (its modules,
such as trip_features.py) or in this package, hamilton_feast, wherever it is installed. A call
is followed by name (`_schema_problems(...)`, `udf_source(...)`) and by attribute of a module
(`windows.trailing_stats(...)`, then the kernels that calls), through a numba-compiled function
to its Python function (`.py_func`). Hamilton fingerprints a node by its own function only, so
without this a change inside a helper or inside the trailing-window kernels of
hamilton_feast/windows.py would go unseen. Package functions are named by their module, as
`hamilton_feast.windows._group_windows`.

Why the project's code, by where it is defined, and not "everything outside site-packages":
the README's install of one repo on its own (`pip install .`) puts hamilton_feast into
site-packages, and a development install leaves it outside; the kernels must be followed in
both. Everything else, the standard library and installed libraries (pandas, numpy, numba,
Hamilton, Feast), is not followed: their versions are not fingerprinted, nor is the code of
another package of yours that the repo imports.

Not followed either: the module-level constants a function reads (`_DAY` in trip_features.py),
a function reached other than by a module-level name or a module's attribute (a method, an
import inside the function), and the code of the nodes the package makes (the saved table, its
saver).

A function's fingerprint is Hamilton's: `HamiltonNode.version` for a node, and the same
`hash_source_code(..., strip=True)` for a function called, so docstrings and comments do not
count. Each view is registered with the fingerprints of the code it derives from, in the tag
`hamilton_code_versions`, and the project with the DAG's (`hamilton_graph_version`); the
`hamilton-feast changes` command compares those with the code.
"""

import ast
import dis
import inspect
import types
from dataclasses import dataclass
from pathlib import Path

from hamilton import driver
from hamilton.graph_types import HamiltonGraph, hash_source_code

from feast import FeatureService, FeatureView, OnDemandFeatureView
from hamilton_feast.models import NOT_CHECKED

CODE_VERSIONS_TAG = "hamilton_code_versions"  # on each view: {function: fingerprint}
GRAPH_VERSION_TAG = "hamilton_graph_version"  # on the project: HamiltonGraph.version
FINGERPRINT_LENGTH = 12  # hex digits kept of each sha256: plenty to tell versions apart
LOADER_TAG = "hamilton.data_loader"
PACKAGE = __name__.split(".")[0]  # hamilton_feast
PACKAGE_DIR = Path(__file__).resolve().parent  # where it is imported from


@dataclass(frozen=True)
class FeatureLineage:
    """Where one feature's values come from."""

    view: str
    field: str
    raw_columns: tuple[str, ...]  # "raw_trips.trip_dist"; request fields as "trip_request.x"
    functions: tuple[str, ...]  # "module.function", the functions called included
    source_features: tuple[str, ...] = ()  # an on-demand field's inputs: "view:field"


def function_name(fn) -> str:
    return f"{fn.__module__}.{fn.__name__}"


def _code_objects(code: types.CodeType):
    """A code object and the code nested in it (comprehensions, lambdas, inner functions)."""
    yield code
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _code_objects(constant)


def _referenced(fn: types.FunctionType, follow):
    """Every object the function's code reads by a global name, and by an attribute of a module
    so read for which `follow(module)` is true, at any depth (`windows.trailing_stats`,
    `hamilton_feast.windows.trailing_stats`). Read from the bytecode, so a local variable of
    the same name does not count."""
    for code in _code_objects(fn.__code__):
        reached = None  # what the loads so far read, while they read a module's attributes
        for instruction in dis.get_instructions(code):
            if instruction.opname == "EXTENDED_ARG":  # part of the next instruction
                continue
            if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
                reached = fn.__globals__.get(instruction.argval)
            elif (instruction.opname in ("LOAD_ATTR", "LOAD_METHOD")
                  and isinstance(reached, types.ModuleType) and follow(reached)):
                reached = getattr(reached, instruction.argval, None)
            else:
                reached = None
                continue
            if reached is not None:
                yield reached


def _python_function(obj) -> types.FunctionType | None:
    """The Python function an object runs: itself, or a numba dispatcher's `py_func`; None for
    anything else. Read statically, so that no object's `__getattr__` runs."""
    if isinstance(obj, types.ModuleType):
        return None
    function = obj if isinstance(obj, types.FunctionType) else inspect.getattr_static(obj, "py_func", None)
    return function if isinstance(function, types.FunctionType) else None


def raw_columns(nodes: dict) -> dict[str, str]:
    """{node: "loader.column"} for the nodes a function extracts (@extract_columns) straight
    from a data loader's output; `nodes` by name, as a driver lists them."""
    loaders = {name for name, node in nodes.items() if node.tags.get(LOADER_TAG) is True and "." not in name}
    raw = {}
    for name, node in nodes.items():
        function = (node.originating_functions or (None,))[0]
        extractor = nodes.get(getattr(function, "__name__", None))
        if extractor is None or extractor.name == name:
            continue
        for loader in sorted(set(extractor.required_dependencies) & loaders):
            raw[name] = f"{loader}.{name}"
    return raw


def _string_constants(source: str) -> set[str]:
    """Every string literal in the source: how a pandas UDF names the columns it reads."""
    if not source:
        return set()
    return {
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


class Lineage:
    """The lineage of every feature of the given Feast objects (node name -> object), for the
    functions defined in `code_dir`.

    Raises ValueError if two views or services share a name, which Feast would refuse too.
    """

    def __init__(self, dr: driver.Driver, objects: dict, code_dir: Path):
        self._dr = dr
        self._code_dir = Path(code_dir).resolve()
        self._nodes = {node.name: node for node in dr.list_available_variables()}
        traced = {
            node: obj
            for node, obj in objects.items()
            if isinstance(obj, (FeatureView, OnDemandFeatureView, FeatureService))
        }
        self.node_of: dict[str, str] = {}  # view or service name -> its node
        for node, obj in traced.items():
            if obj.name in self.node_of:
                raise ValueError(
                    f"nodes {self.node_of[obj.name]!r} and {node!r} both define a view or "
                    f"service named {obj.name!r}; expected each name once"
                )
            self.node_of[obj.name] = node
        self.objects = {obj.name: obj for obj in traced.values()}  # views and services
        self.feast_objects = dict(objects)  # all of them, by node name
        own_nodes = [n for n in self._nodes.values() if self._own_function(n)]
        # Hamilton's fingerprint of the repo's DAG: it changes with any of its functions, even
        # one that feeds no view yet.
        self.graph_version = HamiltonGraph(own_nodes).version[:FINGERPRINT_LENGTH]
        self.raw_columns = self._find_raw_columns()  # node name -> "loader.column"
        self.versions: dict[str, str] = {
            function_name(self._own_function(n)): n.version[:FINGERPRINT_LENGTH]
            for n in own_nodes
            if n.version
        }
        self.features: dict[tuple[str, str], FeatureLineage] = {}
        self._view_code: dict[str, set[str]] = {}
        for view in self._batch_views():
            self._trace_batch_view(view)
        for view in self.on_demand_views():
            self._trace_on_demand_view(view)

    # --- the DAG, by node names ---
    def _defined_in(self, obj) -> Path | None:
        """The file a function or module is defined in, if it has one."""
        try:
            return Path(inspect.getfile(obj)).resolve()
        except TypeError:  # built in, or made at run time without a file
            return None

    def _is_repo_function(self, obj) -> bool:
        """Whether it is a function of a module of the repo folder."""
        if not isinstance(obj, types.FunctionType):
            return False
        path = self._defined_in(obj)
        return path is not None and path.parent == self._code_dir

    def _is_project_code(self, obj) -> bool:
        """Whether a function or module is the project's own code: of the repo folder or of
        the package hamilton_feast (see the module's docstring)."""
        path = self._defined_in(obj)
        return path is not None and (path.parent == self._code_dir or path.is_relative_to(PACKAGE_DIR))

    def _own_function(self, node):
        """The repo function a node comes from, if it comes from one."""
        functions = node.originating_functions or ()
        return functions[0] if functions and self._is_repo_function(functions[0]) else None

    def _find_raw_columns(self) -> dict[str, str]:
        """Columns extracted by a repo function that reads a data loader's output directly."""
        return {name: column for name, column in raw_columns(self._nodes).items()
                if self._own_function(self._nodes[name])}

    def _upstream(self, *names: str) -> set[str]:
        return {node.name for node in self._dr.what_is_upstream_of(*names)}

    def _downstream(self, *names: str) -> set[str]:
        return {node.name for node in self._dr.what_is_downstream_of(*names)}

    def _with_helpers(self, functions) -> set[types.FunctionType]:
        """The functions, and every function of the project's code they call by name or by a
        module's attribute, transitively; a numba-compiled one as its Python function."""
        found, pending = set(), list(functions)
        while pending:
            fn = pending.pop()
            if fn in found:
                continue
            found.add(fn)
            for obj in _referenced(fn, follow=self._is_project_code):
                function = _python_function(obj)
                if function is not None and self._is_project_code(function):
                    pending.append(function)
        return found

    def _code_of(self, node_names: set[str]) -> set[str]:
        """The names of the functions computing these nodes, with the functions they call (see
        `_with_helpers`); their fingerprints are recorded in `versions`."""
        roots = {self._own_function(self._nodes[name]) for name in node_names} - {None}
        code = self._with_helpers(roots)
        for fn in code:
            self.versions.setdefault(
                function_name(fn), hash_source_code(fn, strip=True)[:FINGERPRINT_LENGTH]
            )
        return {function_name(fn) for fn in code}

    # --- the views ---
    def _batch_views(self) -> list[FeatureView]:
        return [o for o in self.objects.values() if isinstance(o, FeatureView)]

    def on_demand_views(self) -> list[OnDemandFeatureView]:
        return [o for o in self.objects.values() if isinstance(o, OnDemandFeatureView)]

    def services(self) -> list[FeatureService]:
        return [o for o in self.objects.values() if isinstance(o, FeatureService)]

    def views(self) -> list:
        return self._batch_views() + self.on_demand_views()

    def _trace_batch_view(self, view: FeatureView) -> None:
        """A field computed by a node of its own name derives from what lies upstream of that
        node and from the nodes that join all the view's fields (the saved table, the sources,
        the view); a field no node computes, from everything upstream of the view."""
        view_nodes = self._upstream(self.node_of[view.name])
        self._view_code[view.name] = self._code_of(view_nodes)
        field_nodes = [f.name for f in view.features if f.name in self._nodes]
        joining = set(view_nodes)
        for name in field_nodes:
            joining &= self._downstream(name)
        for field in view.features:
            nodes = view_nodes
            if field.name in field_nodes:
                nodes = self._upstream(field.name) | joining
            self.features[(view.name, field.name)] = FeatureLineage(
                view=view.name,
                field=field.name,
                raw_columns=tuple(column for name, column in self.raw_columns.items() if name in nodes),
                functions=tuple(sorted(self._code_of(nodes))),
            )

    def _trace_on_demand_view(self, view: OnDemandFeatureView) -> None:
        """An on-demand view's fields derive from its own code (the UDF and the functions it
        embeds), its request fields, and the lineage of the source fields its UDF reads. The
        UDF is not split further: every output field gets the lineage of the whole UDF.

        Its code versions are those of its own code only: it stores no values, so a change
        upstream of its sources is the source view's change (reported as its inputs')."""
        source_views = list(view.source_feature_view_projections)
        own_nodes = self._upstream(self.node_of[view.name]) - self._upstream(
            *(self.node_of[name] for name in source_views)
        )
        read = _string_constants(view.feature_transformation.udf_string)
        own_code = self._code_of(own_nodes)
        raw, functions, sources = set(), set(own_code), []
        for name, projection in view.source_feature_view_projections.items():
            fields = [f.name for f in projection.features]
            for field in [f for f in fields if f in read] or fields:
                upstream_feature = self.features[(name, field)]
                raw.update(upstream_feature.raw_columns)
                functions.update(upstream_feature.functions)
                sources.append(f"{name}:{field}")
        for name, request_source in view.source_request_sources.items():
            fields = [f.name for f in request_source.schema]
            raw.update(f"{name}.{f}" for f in [f for f in fields if f in read] or fields)
        self._view_code[view.name] = own_code
        for field in view.features:
            self.features[(view.name, field.name)] = FeatureLineage(
                view=view.name,
                field=field.name,
                raw_columns=tuple(sorted(raw)),
                functions=tuple(sorted(functions)),
                source_features=tuple(sources),
            )

    # --- fingerprints ---
    def code_versions(self, view_name: str) -> dict[str, str]:
        """Fingerprint of every function the view's values derive from."""
        return {fn: self.versions[fn] for fn in sorted(self._view_code[view_name])}

    # --- the reverse direction ---
    def resolve(self, name: str) -> str:
        """A raw column or function as the lineage names it, from its full name or the end of
        it (`trip_dist`, `trailing_stats`, `windows.trailing_stats`)."""
        candidates = set(self.raw_columns.values()) | set(self.versions)
        for feature in self.features.values():
            candidates.update(feature.raw_columns)
        if name in candidates:
            return name
        matches = sorted(c for c in candidates if c.endswith(f".{name}"))
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise ValueError(f"{name!r} is ambiguous; expected one of {', '.join(matches)}")
        raise ValueError(
            f"{name!r} is neither a raw column nor a function of this folder's DAG; expected one "
            f"of: {', '.join(sorted({c.rsplit('.', 1)[-1] for c in candidates}))}"
        )

    def features_fed_by(self, names: set[str]) -> list[FeatureLineage]:
        return [
            f
            for f in self.features.values()
            if names & (set(f.raw_columns) | set(f.functions))
        ]

    def services_using(self, features: list[FeatureLineage]) -> list[str]:
        """The services that serve any of these features."""
        keys = {(f.view, f.field) for f in features}
        return sorted(
            service.name
            for service in self.services()
            if any(
                (projection.name, field.name) in keys
                for projection in service.feature_view_projections
                for field in projection.features
            )
        )


def _short(name: str) -> str:
    """A function's name in a table: a repo function's own name, a package function's with its
    module (`windows.trailing_stats`)."""
    module, _, function = name.rpartition(".")
    if module.startswith(f"{PACKAGE}."):
        return f"{module.removeprefix(f'{PACKAGE}.')}.{function}"
    return function


def lineage_table(lineage: Lineage) -> str:
    """Per view: the functions every field derives from, then each field's own raw columns and
    functions."""
    blocks = []
    for view in lineage.views():
        features = [lineage.features[(view.name, f.name)] for f in view.features]
        shared = set.intersection(*(set(f.functions) for f in features))
        rows = [(f"{view.name}:", "raw columns", "functions of this field alone")]
        for feature in features:
            rows.append(
                (
                    f"  {feature.field}",
                    ", ".join(feature.raw_columns),
                    ", ".join(_short(fn) for fn in feature.functions if fn not in shared) or "-",
                )
            )
        shared_names = ", ".join(_short(fn) for fn in sorted(shared))
        blocks.append(_format(rows) + f"\n  (every field of {view.name}: {shared_names})")
    return "\n\n".join(blocks)


def impact_table(lineage: Lineage, names: list[str], models_of=None) -> str:
    """What each raw column or function feeds: fields per view, services, and (with
    `models_of(services)`, which names the model versions trained on them, or None when it
    cannot tell) models."""
    blocks = []
    for name in names:
        resolved = lineage.resolve(name)
        fed = lineage.features_fed_by({resolved})
        lines = [f"{resolved} feeds" + ("" if fed else " no feature")]
        lines += [f"  {line}" for line in fields_by_view(lineage, fed)]
        if fed:
            services = lineage.services_using(fed)
            lines.append(f"  services: {', '.join(services) or '-'}")
            if models_of is not None and services:
                trained = models_of(services)
                lines.append(f"  models: {'; '.join(trained) or '-' if trained is not None else NOT_CHECKED}")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def fields_by_view(lineage: Lineage, features: list[FeatureLineage]) -> list[str]:
    """'view: field, field (2 of 11 fields)' for every view with any of the features."""
    lines = []
    for view in lineage.views():
        fields = [f.field for f in features if f.view == view.name]
        if fields:
            share = "all" if len(fields) == len(view.features) else f"{len(fields)} of"
            lines.append(f"{view.name}: {', '.join(fields)} ({share} {len(view.features)} fields)")
    return lines


def _format(rows: list[tuple[str, ...]]) -> str:
    """Left-aligned columns, two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        cells.append(row[-1])
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)

"""Field-level lineage and code fingerprints, read from the Hamilton DAG.

For every feature (view:field) this finds the raw columns and the functions it derives from,
and the reverse: what a raw column or a function feeds. The functions are the DAG's nodes'
functions plus the private helpers they call from this folder (Hamilton fingerprints a node by
its own function only, so a change inside `_rolling_by_driver` would otherwise go unseen).

A function's fingerprint is Hamilton's: `HamiltonNode.version` for a node, and the same
`hash_source_code(..., strip=True)` for a helper, so docstrings and comments do not count.
Each view is registered with the fingerprints of the code it derives from, in the tag
`hamilton_code_versions`; `changes.py` compares those with the code in this folder.
"""

import ast
import inspect
import json
import types
from dataclasses import dataclass
from pathlib import Path

import graphviz
from hamilton import driver
from hamilton.graph_types import HamiltonGraph, hash_source_code

import raw_data
from feast import FeatureService, FeatureView, OnDemandFeatureView, Project

REPO_DIR = Path(__file__).resolve().parent
CODE_VERSIONS_TAG = "hamilton_code_versions"  # on each view: {function: fingerprint}
GRAPH_VERSION_TAG = "hamilton_graph_version"  # on the project: HamiltonGraph.version
FINGERPRINT_LENGTH = 12  # hex digits kept of each sha256: plenty to tell versions apart


@dataclass(frozen=True)
class FeatureLineage:
    """Where one feature's values come from."""

    view: str
    field: str
    raw_columns: tuple[str, ...]  # "raw_trips.trip_dist"; request fields as "trip_request.x"
    functions: tuple[str, ...]  # "module.function", helpers included
    source_features: tuple[str, ...] = ()  # an on-demand field's inputs: "view:field"


def function_name(fn) -> str:
    return f"{fn.__module__}.{fn.__name__}"


def _is_repo_function(obj) -> bool:
    if not isinstance(obj, types.FunctionType):
        return False
    try:
        return Path(inspect.getfile(obj)).resolve().parent == REPO_DIR
    except TypeError:
        return False


def _global_names(code: types.CodeType):
    """The global names a code object uses, nested code (comprehensions, lambdas) included."""
    yield from code.co_names
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _global_names(constant)


def _with_helpers(functions) -> set:
    """The functions, and every function of this folder they call by name, transitively."""
    found, pending = set(), list(functions)
    while pending:
        fn = pending.pop()
        if fn in found:
            continue
        found.add(fn)
        for name in _global_names(fn.__code__):
            candidate = fn.__globals__.get(name)
            if _is_repo_function(candidate):
                pending.append(candidate)
    return found


class Lineage:
    """The lineage of every feature of the given Feast objects (node name -> object).

    Raises ValueError if two views or services share a name, which Feast would refuse too.
    """

    def __init__(self, dr: driver.Driver, objects: dict):
        self._dr = dr
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
        # Hamilton's fingerprint of the whole DAG: it changes with any function, even one that
        # feeds no view yet.
        self.graph_version = HamiltonGraph(list(self._nodes.values())).version[:FINGERPRINT_LENGTH]
        self.raw_columns = [f"raw_trips.{c}" for c in raw_data.RAW_TRIP_SCHEMA if c in self._nodes]
        self.versions: dict[str, str] = {}
        for node in self._nodes.values():
            functions = node.originating_functions or ()
            if functions and _is_repo_function(functions[0]) and node.version:
                self.versions[function_name(functions[0])] = node.version[:FINGERPRINT_LENGTH]
        self.features: dict[tuple[str, str], FeatureLineage] = {}
        self._view_code: dict[str, set[str]] = {}
        for view in self._batch_views():
            self._trace_batch_view(view)
        for view in self.on_demand_views():
            self._trace_on_demand_view(view)

    # --- the DAG, by node names ---
    def _upstream(self, *names: str) -> set[str]:
        return {node.name for node in self._dr.what_is_upstream_of(*names)}

    def _downstream(self, *names: str) -> set[str]:
        return {node.name for node in self._dr.what_is_downstream_of(*names)}

    def _code_of(self, node_names: set[str]) -> set[str]:
        """The functions computing these nodes, with their helpers; fingerprints recorded."""
        roots = set()
        for name in node_names:
            functions = self._nodes[name].originating_functions or ()
            if functions and _is_repo_function(functions[0]):
                roots.add(functions[0])
        code = _with_helpers(roots)
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
        node and from the nodes that join all the view's fields (the table, the saver, the
        sources, the view); a field no node computes, from everything upstream of the view."""
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
                raw_columns=tuple(c for c in self.raw_columns if c.split(".")[1] in nodes),
                functions=tuple(sorted(self._code_of(nodes))),
            )

    def _trace_on_demand_view(self, view: OnDemandFeatureView) -> None:
        """An on-demand view's fields derive from its own code (the UDF and the transforms it
        embeds), its request fields, and the lineage of the source fields its UDF reads. The
        UDF is not split further: every output field gets the lineage of the whole UDF."""
        source_views = list(view.source_feature_view_projections)
        own_nodes = self._upstream(self.node_of[view.name]) - self._upstream(
            *(self.node_of[name] for name in source_views)
        )
        read = _string_constants(view.feature_transformation.udf_string)
        raw, functions, sources = set(), self._code_of(own_nodes), []
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
        self._view_code[view.name] = functions
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

    def stamp(self) -> None:
        """Tag every view with the fingerprints of its code, and the project with the DAG's,
        for `changes.py` to compare."""
        for view in self.views():
            view.tags[CODE_VERSIONS_TAG] = json.dumps(
                self.code_versions(view.name), separators=(",", ":")
            )
        for project in self.feast_objects.values():
            if isinstance(project, Project):
                project.tags[GRAPH_VERSION_TAG] = self.graph_version

    # --- the reverse direction ---
    def resolve(self, name: str) -> str:
        """A raw column or function as the lineage names it, from a short or a full name."""
        candidates = set(self.raw_columns) | set(self.versions)
        for feature in self.features.values():
            candidates.update(feature.raw_columns)
        if name in candidates:
            return name
        matches = sorted(c for c in candidates if c.rsplit(".", 1)[-1] == name)
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


def _string_constants(source: str) -> set[str]:
    """Every string literal in the source: how a pandas UDF names the columns it reads."""
    if not source:
        return set()
    return {
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


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


def impact_table(lineage: Lineage, names: list[str]) -> str:
    """What each raw column or function feeds: fields per view, and services."""
    blocks = []
    for name in names:
        resolved = lineage.resolve(name)
        fed = lineage.features_fed_by({resolved})
        lines = [f"{resolved} feeds" + ("" if fed else " no feature")]
        lines += [f"  {line}" for line in fields_by_view(lineage, fed)]
        if fed:
            lines.append(f"  services: {', '.join(lineage.services_using(fed)) or '-'}")
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


def lineage_picture(lineage: Lineage) -> graphviz.Digraph:
    """Raw columns -> features (one box per view) -> services. An on-demand feature is drawn
    from the stored features and request fields it reads; a raw column feeding nothing (such
    as the label) stands alone."""
    graph = graphviz.Digraph("lineage", graph_attr={"rankdir": "LR"})
    graph.attr("node", shape="box", style="rounded", fontname="Helvetica")
    request_fields = {c for f in lineage.features.values() for c in f.raw_columns}
    for column in lineage.raw_columns + sorted(request_fields - set(lineage.raw_columns)):
        graph.node(column, shape="note")
    for view in lineage.views():
        with graph.subgraph(name=f"cluster_{view.name}") as cluster:
            cluster.attr(label=view.name, fontname="Helvetica")
            for field in view.features:
                cluster.node(_node_id(view.name, field.name), label=field.name)
    for feature in lineage.features.values():
        inputs = [_node_id(*source.split(":")) for source in feature.source_features]
        if inputs:
            inputs += [c for c in feature.raw_columns if c not in lineage.raw_columns]
        for source in inputs or feature.raw_columns:
            graph.edge(source, _node_id(feature.view, feature.field))
    for service in lineage.services():
        graph.node(service.name, shape="component")
        for projection in service.feature_view_projections:
            for field in projection.features:
                graph.edge(_node_id(projection.name, field.name), service.name)
    return graph


def _node_id(view: str, field: str) -> str:
    return f"{view}/{field}"  # not "view:field", which graphviz reads as a node's port

"""Pictures of a repo, drawn from its code: the Hamilton DAG (dag.png) and the field lineage
(lineage.png), each with its DOT source (which the tests compare, with the PNG, to the committed
files).

The DAG picture shows what a reader needs: raw columns, features, the saved table, the Feast
objects and the Feast operations. Hamilton's helper nodes are folded into the node they serve:
a `@check_output` feature is one box (marked "checked") instead of a `_raw` node and its
validators, a `@dataloader` one box instead of two, a saved table one cylinder instead of the
table and its saver. Nodes and edges are sorted, so the same code gives the same file.
"""

import html
import shutil
import subprocess
from pathlib import Path

import graphviz
from hamilton import driver
from hamilton.graph_types import get_type_as_string

from hamilton_feast import feast_operations, objects
from hamilton_feast.lineage import Lineage

VALIDATOR_TAG = "hamilton.data_quality.contains_dq_results"
CHECKED_TAG = "hamilton.data_quality.source_node"
STYLES = {
    "input": {"shape": "rectangle", "style": "filled,dashed", "fillcolor": "#ffffff"},
    "function": {"shape": "rectangle", "style": "rounded,filled", "fillcolor": "#b4d8e4"},
    "checked": {"shape": "rectangle", "style": "rounded,filled", "fillcolor": "#b4d8e4", "peripheries": "2"},
    "loader": {"shape": "folder", "style": "filled", "fillcolor": "#e8e8e8"},
    "saved table": {"shape": "cylinder", "style": "filled", "fillcolor": "#ffc857"},
    "Feast object": {"shape": "rectangle", "style": "rounded,filled", "fillcolor": "#f5a9b8"},
    "Feast operation": {"shape": "rectangle", "style": "rounded,filled", "fillcolor": "#9fd8a6"},
}


def _representatives(nodes: dict) -> dict[str, str | None]:
    """Each node -> the node drawn for it (itself, the node it is folded into, or None)."""
    checked = {n.tags[CHECKED_TAG] for n in nodes.values() if n.tags.get(VALIDATOR_TAG)}
    drawn = {}
    for name, node in nodes.items():
        if node.tags.get(VALIDATOR_TAG):
            drawn[name] = None
        elif name.endswith("_raw") and name[: -len("_raw")] in checked:
            drawn[name] = name[: -len("_raw")]
        elif name.endswith(".loader") and name[: -len(".loader")] in nodes:
            drawn[name] = name[: -len(".loader")]
        elif name.endswith("_build_result") and name[: -len("_build_result")] in nodes:
            drawn[name] = name[: -len("_build_result")]
        else:
            drawn[name] = name
    return drawn


def _kind(node, checked: set[str]) -> str:
    if node.is_external_input:
        return "input"
    if node.tags.get("hamilton.data_saver"):
        return "saved table"
    if node.tags.get("hamilton.data_loader"):
        return "loader"
    if node.tags.get("module") == feast_operations.__name__:
        return "Feast operation"
    if objects.is_feast_object_type(node.type):
        return "Feast object"
    return "checked" if node.name in checked else "function"


def dag_picture(dr: driver.Driver, hidden_inputs=(), orient: str = "LR") -> graphviz.Digraph:
    """The DAG of `dr` as a graph, leaving out the inputs named in `hidden_inputs` (the
    driver's config)."""
    nodes = {n.name: n for n in dr.list_available_variables() if n.name not in set(hidden_inputs)}
    drawn = _representatives(nodes)
    checked = {n.tags[CHECKED_TAG] for n in nodes.values() if n.tags.get(VALIDATOR_TAG)}
    graph = graphviz.Digraph("dag", graph_attr={"rankdir": orient, "ranksep": "0.4"})
    graph.attr("node", fontname="Helvetica", margin="0.15")
    edges = set()
    for name in sorted(nodes):
        node = nodes[name]
        if drawn[name] != name:
            continue
        kind = _kind(node, checked)
        type_name = html.escape(get_type_as_string(node.type) or "")
        graph.node(name, label=f"<<b>{html.escape(name)}</b><br/><i>{type_name}</i>>", **STYLES[kind])
    for name, node in nodes.items():
        target = drawn[name]
        if target is None:
            continue
        for dependency in node.required_dependencies | node.optional_dependencies:
            origin = drawn.get(dependency)
            if origin is not None and origin != target:
                edges.add((origin, target))
    for origin, target in sorted(edges):
        graph.edge(origin, target)
    with graph.subgraph(name="cluster_legend") as legend:
        legend.attr(label="Legend", fontname="Helvetica", rank="same")
        for kind in sorted({_kind(nodes[n], checked) for n in set(drawn.values()) - {None}}):
            legend.node(f"legend: {kind}", label=kind, **STYLES[kind])
    return graph


def _node_id(view: str, field: str) -> str:
    return f"{view}/{field}"  # not "view:field", which graphviz reads as a node's port


def lineage_picture(lineage: Lineage) -> graphviz.Digraph:
    """Raw columns -> features (one box per view) -> services. An on-demand feature is drawn
    from the stored features and request fields it reads; a raw column feeding nothing (such
    as a label) stands alone."""
    graph = graphviz.Digraph("lineage", graph_attr={"rankdir": "LR"})
    graph.attr("node", shape="box", style="rounded", fontname="Helvetica")
    raw_columns = list(lineage.raw_columns.values())
    request_fields = {c for f in lineage.features.values() for c in f.raw_columns}
    for column in raw_columns + sorted(request_fields - set(raw_columns)):
        graph.node(column, shape="note")
    for view in lineage.views():
        with graph.subgraph(name=f"cluster_{view.name}") as cluster:
            cluster.attr(label=view.name, fontname="Helvetica")
            for field in view.features:
                cluster.node(_node_id(view.name, field.name), label=field.name)
    for feature in lineage.features.values():
        inputs = [_node_id(*source.split(":")) for source in feature.source_features]
        if inputs:
            inputs += [c for c in feature.raw_columns if c not in raw_columns]
        for source in inputs or feature.raw_columns:
            graph.edge(source, _node_id(feature.view, feature.field))
    for service in lineage.services():
        graph.node(service.name, shape="component")
        for projection in service.feature_view_projections:
            for field in projection.features:
                graph.edge(_node_id(projection.name, field.name), service.name)
    return graph


def png(graph: graphviz.Digraph) -> bytes:
    """The graph rendered by Graphviz's `dot` (Debian package graphviz)."""
    if shutil.which("dot") is None:
        raise FileNotFoundError("Graphviz's `dot` is not installed; install it: apt-get install graphviz")
    return subprocess.run(["dot", "-Tpng"], input=graph.source.encode(), capture_output=True,
                          check=True).stdout


def pictures(repo) -> dict[Path, graphviz.Digraph]:
    """The repo's pictures by path stem: dag (of the driver apply.py runs), and lineage if the
    repo traces it."""
    hidden = [*repo.config, *feast_operations.OUTPUT_OPTIONS]  # settings of the run, not data
    drawn = {repo.path / "dag": dag_picture(repo.driver(), hidden_inputs=hidden)}
    if repo.lineage is not None:
        drawn[repo.path / "lineage"] = lineage_picture(repo.lineage)
    return drawn


def outdated(drawn: dict[Path, graphviz.Digraph]) -> list[Path]:
    """The committed files (.dot and .png) that differ from what the code draws."""
    stale = []
    for stem, graph in drawn.items():
        for path, content in ((stem.with_suffix(".dot"), graph.source.encode()),
                              (stem.with_suffix(".png"), png(graph))):
            if not path.is_file() or path.read_bytes() != content:
                stale.append(path)
    return stale


def write(drawn: dict[Path, graphviz.Digraph]) -> list[Path]:
    written = []
    for stem, graph in drawn.items():
        stem.with_suffix(".dot").write_text(graph.source)
        stem.with_suffix(".png").write_bytes(png(graph))
        written += [stem.with_suffix(".dot"), stem.with_suffix(".png")]
    return written

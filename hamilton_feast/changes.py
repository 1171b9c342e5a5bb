"""What does my change affect? The code of a repo compared with what is registered.

A view has changed when the code its values derive from has (by the Hamilton fingerprints it
was registered with; see lineage.py), even if its Feast schema has not, or when its Feast
definition has (fields, TTL, description...). Services are reported through their views.
`refresh` recomputes only the saved tables of the views whose values changed, registers, and
re-materializes those views. Used by `hamilton-feast changes`.
"""

import contextlib
import copy
import io
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

from feast import FeatureStore, FeatureView, OnDemandFeatureView
from feast.infra.registry.registry import FeastObjectType
from google.protobuf.message import Message
from hamilton_feast import lineage, models, objects, online, openlineage
from hamilton_feast.notices import known_notices_hidden

EXIT_CHANGED = 2  # as `terraform plan -detailed-exitcode`: 1 is an error, 2 means changes


@dataclass
class ViewChange:
    """How a view in the code differs from the registered one."""

    name: str
    status: str  # "new", "removed", "changed", or "inputs changed" (an on-demand view's)
    code: list[str] = field(default_factory=list)  # functions whose fingerprint changed
    fields: list[str] = field(default_factory=list)  # fields those functions (or inputs) feed
    inputs: list[str] = field(default_factory=list)  # changed source fields, "view:field"
    schema: list[str] = field(default_factory=list)  # fields added, removed or retyped
    definition: list[str] = field(default_factory=list)  # other Feast properties changed
    registered: object = None  # the registered view, if any

    @property
    def needs_recompute(self) -> bool:
        """Whether its stored values may differ: a description or TTL change does not count."""
        return self.status == "new" or bool(self.code or self.schema)


@dataclass
class Changes:
    views: list[ViewChange]
    services: dict[str, list[str]]  # service -> why it changed
    unchanged: list[str]
    graph_versions: tuple[str | None, str]  # the DAG's fingerprint: registered (if any), now
    models: list[str] | None = field(default_factory=list)  # model versions of a changed service (None: unknown)

    def __bool__(self) -> bool:
        return bool(self.views or self.services)


def _fields(view) -> dict[str, str]:
    return {f.name: str(f.dtype) for f in view.features}


def _schema_changes(registered, current) -> list[str]:
    before, after = _fields(registered), _fields(current)
    changes = [f"+ {name} ({dtype})" for name, dtype in after.items() if name not in before]
    changes += [f"- {name} ({dtype})" for name, dtype in before.items() if name not in after]
    changes += [
        f"~ {name} ({before[name]} -> {dtype})"
        for name, dtype in after.items()
        if name in before and before[name] != dtype
    ]
    return changes


VIEW_TYPES = {FeastObjectType.FEATURE_VIEW, FeastObjectType.ON_DEMAND_FEATURE_VIEW}
REPORTED_TYPES = VIEW_TYPES | {FeastObjectType.FEATURE_SERVICE}


def _cleared(value, names: set[str]):
    """A copy of a proto value (a message, or a list or map of them) with the fields `names`
    cleared at every depth."""
    if not isinstance(value, Message):
        if hasattr(value, "items"):
            return {key: _cleared(item, names) for key, item in value.items()}
        if isinstance(value, (str, bytes)):
            return value
        try:
            return [_cleared(item, names) for item in value]
        except TypeError:  # not a container
            return value
    value = copy.deepcopy(value)
    pending = [value]
    while pending:
        message = pending.pop()
        for descriptor, child in message.ListFields():
            if descriptor.name in names:
                message.ClearField(descriptor.name)
            elif isinstance(child, Message):
                pending.append(child)
            elif descriptor.message_type is not None:  # a map or a list of messages
                children = child.values() if hasattr(child, "values") else child
                pending += [c for c in children if isinstance(c, Message)]
    return value


# What the comparison ignores: registry timestamps (`meta`; feast 0.67's plan compares them, so
# every registered view would look changed), and in an on-demand view's `sources`, the copies
# of its source views' descriptions and tags (reported with those views).
IGNORED = {"meta"}
IGNORED_IN = {
    "sources": {"meta", "description", "tags"},
    "features": {"meta", "description", "tags"},  # a service's: copies of its views' fields
}


def _definition_changes(registry_diff) -> dict[str, list[str]]:
    """Per view and service, the properties Feast's own plan finds changed, besides what is
    reported in detail: fields added, removed or retyped, and the fingerprint tag."""
    changed = {}
    for diff in registry_diff.feast_object_diffs:
        if diff.feast_object_type not in REPORTED_TYPES:
            continue
        names = []
        for prop in diff.feast_object_property_diffs:
            before, after = prop.val_existing, prop.val_declared
            if prop.property_name == "features" and diff.feast_object_type in VIEW_TYPES:
                old = {f.name: f.description for f in before}
                described = [
                    f.name for f in after if old.get(f.name, f.description) != f.description
                ]
                if described:
                    names.append(f"descriptions of {', '.join(described)}")
                continue
            if prop.property_name == "tags":
                before, after = dict(before), dict(after)
                before.pop(lineage.CODE_VERSIONS_TAG, None)
                after.pop(lineage.CODE_VERSIONS_TAG, None)
            ignored = IGNORED_IN.get(prop.property_name, IGNORED)
            if _cleared(before, ignored) != _cleared(after, ignored):
                names.append(prop.property_name)
        changed[diff.name] = names
    return changed


def registered_views(store: FeatureStore) -> dict:
    registry, project = store.registry, store.project
    views = registry.list_feature_views(project, allow_cache=False)
    views += registry.list_on_demand_feature_views(project, allow_cache=False)
    return {view.name: view for view in views}


def find_changes(store: FeatureStore, repo) -> Changes:
    """Compare the views and services of the repo's code with those registered in the store."""
    current = repo.lineage
    registered = registered_views(store)
    registered_services = {
        s.name: s for s in store.registry.list_feature_services(store.project, allow_cache=False)
    }
    # The objects as apply would register them (tagged), for tables where settings.yaml puts them.
    code_objects = repo.feast_objects(overrides=repo.saved_tables_as_configured())
    with known_notices_hidden():
        registry_diff, _, _ = store.plan(objects.repo_contents(code_objects.values(), store.project))
    definitions = _definition_changes(registry_diff)

    views, unchanged = [], []
    for view in current.views():
        old = registered.get(view.name)
        if old is None:
            views.append(ViewChange(view.name, "new", fields=[f.name for f in view.features]))
            continue
        stored = json.loads(old.tags.get(lineage.CODE_VERSIONS_TAG, "{}"))
        now = current.code_versions(view.name)
        code = sorted(fn for fn in set(stored) | set(now) if stored.get(fn) != now.get(fn))
        fed = {(f.view, f.field) for f in current.features_fed_by(set(code))}
        change = ViewChange(
            view.name,
            "changed",
            registered=old,
            code=code,
            fields=[f.name for f in view.features if (view.name, f.name) in fed],
            schema=_schema_changes(old, view),
            definition=definitions.get(view.name, []),
        )
        if change.code or change.schema or change.definition:
            views.append(change)
            continue
        # An on-demand view stores nothing: a change upstream reaches it through its inputs.
        affected = {f"{c.name}:{name}" for c in views for name in c.fields}
        inputs = sorted({
            source
            for f in view.features
            for source in current.features[(view.name, f.name)].source_features
            if source in affected
        })
        if inputs:
            fields = [f.name for f in view.features]
            views.append(ViewChange(view.name, "inputs changed", registered=old, fields=fields, inputs=inputs))
        else:
            unchanged.append(view.name)
    views += [
        ViewChange(name, "removed", registered=view)
        for name, view in registered.items()
        if name not in current.objects
    ]

    changed_views = {change.name: change for change in views}
    services = {}
    for service in current.services():
        if service.name not in registered_services:
            services[service.name] = ["new"]
            continue
        reasons = []
        for projection in service.feature_view_projections:
            change = changed_views.get(projection.name)
            if change is None:
                continue
            served = {f.name for f in projection.features}
            affected = [f for f in change.fields if f in served]
            if affected:
                reasons.append(f"{projection.name}: {', '.join(affected)}")
            elif change.status != "changed" or change.schema or change.definition:
                why = "; ".join(change.schema + change.definition) or change.status
                reasons.append(f"{projection.name} ({why})")
        reasons += definitions.get(service.name, [])
        if reasons:
            services[service.name] = reasons
        else:
            unchanged.append(service.name)
    for name in registered_services:
        if name not in current.objects:
            services[name] = ["removed"]
    projects = store.registry.list_projects(allow_cache=False)
    tags = next((p.tags for p in projects if p.name == store.project), {})
    before = tags.get(lineage.GRAPH_VERSION_TAG)
    trained = models.versions_using(store, sorted(services)) if services else []
    return Changes(views, services, sorted(unchanged), (before, current.graph_version), trained)


def changes_report(changes: Changes, current: lineage.Lineage, project: str) -> str:
    lines = [f"Compared with the registry of project {project}:"]
    before, now = changes.graph_versions
    if not changes:
        lines.append("nothing changed.")
        if before is not None and before != now:
            lines.append(f"(the Hamilton DAG did, {before} -> {now}, in code no view derives from)")
    for change in changes.views:
        inputs = f" ({', '.join(change.inputs)})" if change.inputs else ""
        lines.append(f"{change.name}: {change.status}{inputs}")
        if change.code:
            lines.append(f"  code changed: {', '.join(change.code)}")
        if change.code or change.inputs:
            total = len(current.objects[change.name].features)
            affected = f"{', '.join(change.fields)} ({len(change.fields)} of {total})"
            lines.append(f"  fields affected: {affected}")
        if change.schema:
            lines.append(f"  schema: {'; '.join(change.schema)}")
        if change.definition:
            lines.append(f"  definition: {', '.join(change.definition)}")
    for name, reasons in changes.services.items():
        lines.append(f"{name} (service): {'; '.join(reasons)}")
    if changes.services and changes.models != []:
        trained = models.NOT_CHECKED if changes.models is None else ", ".join(changes.models)
        lines.append(f"models trained on a changed service (retrain them): {trained}")
    if changes.unchanged:
        lines.append(f"unchanged: {', '.join(changes.unchanged)}")
    return "\n".join(lines)


def refresh(store: FeatureStore, repo, changes: Changes) -> None:
    """Recompute the saved tables of the views whose values changed, register everything, and
    re-materialize those views over what was materialized before (or their TTL)."""
    current = repo.lineage
    dr = repo.driver(*openlineage.adapters(repo))
    stale = [
        change
        for change in changes.views
        if change.needs_recompute and isinstance(current.objects[change.name], FeatureView)
    ]
    names = [change.name for change in stale]
    recompute = sorted(
        {node.name for name in names for node in dr.what_is_upstream_of(current.node_of[name])}
        & set(repo.saved_table_paths)
    )
    print(f"Recomputing: {', '.join(recompute) or 'nothing'} (for {', '.join(names) or 'no view'})")
    kept = {}  # the tables saved last, for the views not recomputed (none saved yet on a first refresh)
    if set(repo.saved_table_paths) - set(recompute):
        kept = {node: found for node, found in repo.saved_tables_found().items() if node not in recompute}
    print(f"Applying changes for project {store.project}")
    with contextlib.redirect_stdout(io.StringIO()):  # Feast lists every changed property
        dr.execute(["registered"], inputs=repo.inputs, overrides=kept)
    end = datetime.now(timezone.utc)
    for change in stale:
        intervals = change.registered.materialization_intervals if change.registered else []
        ttl = current.objects[change.name].ttl
        start = min((s for s, _ in intervals), default=end - ttl)
        print(
            f"Re-materializing {change.name} from {start:%Y-%m-%d %H:%M} "
            f"to {end:%Y-%m-%d %H:%M} UTC"
        )
        online.rematerialize(store, change.name, start, end)
    on_demand = [
        change.name
        for change in changes.views
        if isinstance(current.objects.get(change.name), OnDemandFeatureView)
    ]
    if on_demand:
        print(f"Registered, nothing to materialize: {', '.join(on_demand)} (computed on demand)")

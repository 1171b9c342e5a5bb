"""Plans to read at a glance: one line for each object Feast's plan would create, delete or
update, saying what changes in it: fields added, removed or retyped, the TTL, the code its values
derive from (the functions whose fingerprint in the view's code versions changed), other
properties by name; or "registry metadata only" for an object Feast reports updated for the
timestamps it keeps itself (a view, after every materialization). Feast's own diff, property by
property in protobuf text, is what `--full-diff` prints.
"""

import json

from feast import FeatureService, FeatureView, OnDemandFeatureView
from feast.diff.property_diff import TransitionType
from feast.errors import FeatureServiceNotFoundException
from feast.feature_view import DUMMY_ENTITY_NAME
from hamilton_feast.changes import IGNORED, IGNORED_IN, _cleared, _schema_changes
from hamilton_feast.lineage import CODE_VERSIONS_TAG

METADATA_ONLY = "registry metadata only (timestamps Feast keeps)"


def _code_changed(before: dict, after: dict) -> list[str]:
    """The functions whose fingerprint differs between two views' code-version tags."""
    old, new = (json.loads(tags.get(CODE_VERSIONS_TAG, "{}")) for tags in (before, after))
    return sorted(function for function in set(old) | set(new) if old.get(function) != new.get(function))


def _what_changed(diff) -> list[str]:
    """What an updated object's properties say changed, each in a few words."""
    current, new = diff.current_feast_object, diff.new_feast_object
    parts = []
    for prop in diff.feast_object_property_diffs:
        name, before, after = prop.property_name, prop.val_existing, prop.val_declared
        if name == "features" and isinstance(current, (FeatureView, OnDemandFeatureView)):
            parts += _schema_changes(current, new)
            old = {f.name: f.description for f in current.features}
            described = [f.name for f in new.features if old.get(f.name, f.description) != f.description]
            parts += [f"descriptions of {', '.join(described)}"] if described else []
        elif name == "ttl":
            parts.append(f"ttl {current.ttl} -> {new.ttl}")
        elif name == "tags":
            before, after = dict(before), dict(after)
            code = _code_changed(before, after)
            parts += [f"code of {', '.join(code)}"] if code else []
            tags = sorted(k for k in (set(before) | set(after)) - {CODE_VERSIONS_TAG} if before.get(k) != after.get(k))
            parts += [f"tags {', '.join(tags)}"] if tags else []
        elif _cleared(before, IGNORED_IN.get(name, IGNORED)) != _cleared(after, IGNORED_IN.get(name, IGNORED)):
            parts.append(name)
    return parts


def logging_changed(registry, project: str, repo_contents) -> list[FeatureService]:
    """The registered feature services whose logging configuration the code changes. Feast 0.67
    compares services without it, so its plan shows no such change and its apply writes none."""
    changed = []
    for service in repo_contents.feature_services:
        try:
            current = registry.get_feature_service(service.name, project, allow_cache=False)
        except FeatureServiceNotFoundException:
            continue  # a new service is created whole, its logging included
        if current.to_proto().spec.logging_config != service.to_proto().spec.logging_config:
            changed.append(service)
    return changed


def summary(registry_diff, logging_changes: list[FeatureService] = ()) -> str:
    """The registry's changes, one line per object, in the words of Feast's plan ("Created
    feature view x", "Updated entity y: ..."), with the `logging_changes` Feast's diff does not
    see; "No changes to registry" when there are none."""
    verbs = {TransitionType.CREATE: "Created", TransitionType.DELETE: "Deleted", TransitionType.UPDATE: "Updated"}
    unseen = {service.name for service in logging_changes}
    lines = []
    for diff in registry_diff.feast_object_diffs:
        if diff.name == DUMMY_ENTITY_NAME:
            continue
        if diff.transition_type == TransitionType.UNCHANGED:
            if diff.name in unseen and isinstance(diff.new_feast_object, FeatureService):
                lines.append(f"Updated {diff.feast_object_type.value} {diff.name}: logging_config")
            continue
        line = f"{verbs[diff.transition_type]} {diff.feast_object_type.value} {diff.name}"
        if diff.transition_type == TransitionType.UPDATE:
            line += f": {'; '.join(_what_changed(diff)) or METADATA_ONLY}"
        lines.append(line)
    return "\n".join(lines) or "No changes to registry"

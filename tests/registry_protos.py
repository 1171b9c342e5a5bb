"""Registry contents as comparable dictionaries: one entry per Feast object, keyed by kind and name.

Ignored, because they differ between two registrations of the same definitions: created and
updated timestamps, the project a definition belongs to, and the project's own name. With
`ignore_udf_code`, also an on-demand view's UDF text, pickled bytes and function name.
"""

from google.protobuf.json_format import MessageToDict

from feast import FeatureStore

# Fields that differ between two registrations of the same definitions and say nothing about them.
BOOKKEEPING_FIELDS = {"createdTimestamp", "lastUpdatedTimestamp", "project", "projectId"}
# The UDF as code: its text, its pickled bytes and its function name. Compared by behaviour instead.
UDF_CODE_FIELDS = {"body", "bodyText", "name"}

REGISTRY_LISTS = [
    "projects",
    "entities",
    "dataSources",
    "featureViews",
    "onDemandFeatureViews",
    "labelViews",
    "featureServices",
    "streamFeatureViews",
    "permissions",
]


def _strip(value, ignore_udf_code: bool):
    if isinstance(value, dict):
        stripped = {}
        for key, item in value.items():
            if key in BOOKKEEPING_FIELDS:
                continue
            if key == "userDefinedFunction" and ignore_udf_code:
                item = {k: v for k, v in item.items() if k not in UDF_CODE_FIELDS}
            stripped[key] = _strip(item, ignore_udf_code)
        return stripped
    if isinstance(value, list):
        return [_strip(item, ignore_udf_code) for item in value]
    return value


def _object_name(kind: str, entry: dict) -> str:
    if kind == "projects":
        # Each repo's project is named after its folder; that name is compared nowhere.
        entry["spec"].pop("name")
        return "<the project>"
    return entry.get("spec", entry)["name"]


def registry_objects(repo_path, ignore_udf_code: bool = False) -> dict:
    """{(kind, name): definition} for every object in the repo's registry."""
    registry = MessageToDict(FeatureStore(repo_path=str(repo_path)).registry.proto())
    objects = {}
    for kind in REGISTRY_LISTS:
        for entry in registry.get(kind, []):
            name = _object_name(kind, entry)
            objects[(kind, name)] = _strip(entry, ignore_udf_code)
    return objects

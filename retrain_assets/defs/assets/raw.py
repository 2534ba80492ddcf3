"""``raw_data``: the landed batches, a Delta table; the asset pins one table version for the run."""

from dagster import AssetExecutionContext, DataVersion, Failure, MetadataValue, Output, TableColumn, TableSchema, asset

from retrain_assets.core import delta
from retrain_assets.core.names import DELTA_VERSION_TAG
from retrain_assets.defs.resources import RetrainProject


@asset(group_name="retrain", kinds={"deltalake"}, code_version="1")
def raw_data(context: AssetExecutionContext, project: RetrainProject) -> Output[delta.TableRef]:
    """Every ingested batch, one Delta version each. The run works on the version in the run tag
    ``retrain/delta_version`` (set by sensors and backfills), else on the latest; that version is the
    asset's Dagster data version."""
    config = project.load()
    uri = config.table_uri(delta.RAW_TABLE)
    pinned = context.run.tags.get(DELTA_VERSION_TAG)
    summary = delta.table_summary(uri, int(pinned) if pinned is not None else None)
    if summary is None:
        raise Failure(f"raw_data: no Delta table at {uri}; land a batch first with `retrain ingest FILE`")
    version = summary["version"]
    commit = next(entry for entry in delta.history(uri) if entry["version"] == version)
    schema = TableSchema([TableColumn(name, kind) for name, kind in config.data.columns.items()])
    return Output(
        delta.TableRef(uri, version, version),
        data_version=DataVersion(str(version)),
        metadata={
            "delta_version": version,
            "rows": summary["rows"],
            "files": summary["files"],
            "uri": MetadataValue.path(uri),
            "source_file": commit.get(delta.SOURCE_KEY, "(not written by retrain ingest)"),
            "dagster/column_schema": schema,
        },
    )

"""``raw_data``: the landed batches, a Delta table; the asset pins one table version for the run."""

from dagster import AssetExecutionContext, DataVersion, Failure, MetadataValue, Output, TableColumn, TableSchema, asset

from retrain_assets import lake
from retrain_assets.names import DELTA_VERSION_TAG
from retrain_assets.resources import RetrainProject


@asset(group_name="retrain", kinds={"deltalake"}, code_version="1")
def raw_data(context: AssetExecutionContext, project: RetrainProject) -> Output[lake.TableRef]:
    """Every ingested batch, one Delta version each. The run works on the version in the run tag
    ``retrain/delta_version`` (set by sensors and backfills), else on the latest; that version is the
    asset's Dagster data version."""
    config = project.load()
    uri = config.table_uri(lake.RAW_TABLE)
    pinned = context.run.tags.get(DELTA_VERSION_TAG)
    summary = lake.table_summary(uri, int(pinned) if pinned is not None else None)
    if summary is None:
        raise Failure(f"raw_data: no Delta table at {uri}; land a batch first with `retrain ingest FILE`")
    version = summary["version"]
    commit = next(entry for entry in lake.history(uri) if entry["version"] == version)
    schema = TableSchema([TableColumn(name, kind) for name, kind in config.data.columns.items()])
    return Output(
        lake.TableRef(uri, version, version),
        data_version=DataVersion(str(version)),
        metadata={
            "delta_version": version,
            "rows": summary["rows"],
            "files": summary["files"],
            "uri": MetadataValue.path(uri),
            "source_file": commit.get(lake.SOURCE_KEY, "(not written by retrain ingest)"),
            "dagster/column_schema": schema,
        },
    )

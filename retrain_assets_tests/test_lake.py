"""Landing batches in raw_data: one version per file, refused files quarantined intact, every version readable."""

import pandas as pd
import pyarrow.dataset as ds
import pytest
from deltalake import DeltaTable
from pyarrow.fs import FileSystem

from retrain_assets import lake
from retrain_assets.lake import BatchRefused, ingest_file


def test_each_file_is_one_version_readable_by_plain_readers(project):
    uri = project.config.table_uri(lake.RAW_TABLE)
    results = [ingest_file(project.config, project.batch(day)) for day in (0, 1, 3)]

    assert [r.version for r in results] == [0, 1, 2]
    for result in results:
        table = DeltaTable(uri, version=result.version)
        assert table.to_pyarrow_table().num_rows == 600 * (result.version + 1)
        filesystem, _ = FileSystem.from_uri(table.file_uris()[0])  # local disk, or S3 from the AWS_* environment
        paths = [FileSystem.from_uri(uri)[1] for uri in table.file_uris()]
        assert ds.dataset(paths, format="parquet", filesystem=filesystem).count_rows() == 600 * (result.version + 1)
    original = pd.read_csv(project.batch(1))
    landed = lake.read_batch(uri, 1).to_pandas()
    assert landed["customer_id"].tolist() == original["customer_id"].tolist()
    assert landed["monthly_charges"].tolist() == pytest.approx(original["monthly_charges"].tolist())
    assert str(landed["event_time"].dtype) == "datetime64[us, UTC]"
    assert DeltaTable(uri).history(1)[0][lake.SOURCE_KEY] == project.batch(3).name


def test_bad_values_land_in_raw(project):
    result = ingest_file(project.config, project.batch(2))  # nulls, out-of-range charges, unknown region

    landed = lake.read_batch(project.config.table_uri(lake.RAW_TABLE), result.version).to_pandas()
    assert landed["tenure_months"].isna().sum() > 0
    assert "atlantis" in set(landed["region"])


@pytest.mark.parametrize(
    "name, content, named",
    [
        ("garbage.parquet", b"\x00not parquet at all", "cannot be read"),
        ("wrong-type.csv", None, "tenure_months"),
        ("missing-column.csv", None, "region"),
        ("notes.txt", b"hello", "unsupported file type"),
    ],
)
def test_refused_file_is_quarantined_byte_identical_and_writes_nothing(project, tmp_path, name, content, named):
    config = project.config
    ingest_file(config, project.batch(0))
    path = tmp_path / name
    if content is None:
        frame = pd.read_csv(project.batch(1))
        if name == "wrong-type.csv":
            frame["tenure_months"] = frame["tenure_months"].astype(object)
            frame.loc[5, "tenure_months"] = "twelve"
        else:
            frame = frame.drop(columns=["region"])
        frame.to_csv(path, index=False)
    else:
        path.write_bytes(content)
    before = path.read_bytes()

    with pytest.raises(BatchRefused) as refused:
        ingest_file(config, path)

    assert name in str(refused.value) and named in str(refused.value)
    assert refused.value.quarantined.read_bytes() == before
    assert refused.value.quarantined.parent == config.quarantine_dir
    assert named in refused.value.quarantined.with_name(refused.value.quarantined.name + ".reason.txt").read_text()
    assert path.read_bytes() == before, "the source file is left alone"
    assert DeltaTable(config.table_uri(lake.RAW_TABLE)).version() == 0


def test_same_content_twice_is_refused_without_quarantine(project):
    ingest_file(project.config, project.batch(0))

    with pytest.raises(BatchRefused, match="already landed as raw_data version 0"):
        ingest_file(project.config, project.batch(0))
    assert not project.config.quarantine_dir.exists()


def test_batches_are_appends_only_and_a_compaction_is_not_a_batch(project):
    uri = project.config.table_uri(lake.RAW_TABLE)
    for day in (0, 1):
        ingest_file(project.config, project.batch(day))
    DeltaTable(uri).optimize.compact()
    ingest_file(project.config, project.batch(3))

    assert lake.latest_version(uri) == 3
    assert lake.batch_versions(uri, None, 3) == [0, 1, 3]
    assert lake.batch_versions(uri, 1, 3) == [3]
    assert lake.read_batch(uri, 3).num_rows == 600


def newest_event(path):
    return pd.to_datetime(pd.read_csv(path)["event_time"], utc=True, format="mixed").max().to_pydatetime()


def test_as_of_before_the_batchs_own_events_is_refused_at_ingest(project):
    import datetime as dt

    config, path = project.config, project.batch(0)
    newest = newest_event(path)
    early = newest - dt.timedelta(hours=5)

    with pytest.raises(BatchRefused) as refused:
        ingest_file(config, path, early)

    message = str(refused.value)
    assert message.startswith(f"{path.name}: --as-of {early:%Y-%m-%dT%H:%M:%SZ} is 5 h before the batch's own newest "
                              f"'event_time' value {newest:%Y-%m-%dT%H:%M:%SZ}, more than the 1 h of clock skew")
    assert refused.value.quarantined.read_bytes() == path.read_bytes()
    (refusal,) = lake.recent_refusals(config)
    assert refusal["file"] == str(path) and "'event_time'" in refusal["reason"]
    assert lake.latest_version(config.table_uri(lake.RAW_TABLE)) is None
    within_skew = newest - dt.timedelta(minutes=59)
    assert ingest_file(config, path, within_skew).version == 0


def test_as_of_before_the_newest_landed_batch_is_refused_at_ingest(project):
    import datetime as dt

    config = project.config
    uri = config.table_uri(lake.RAW_TABLE)
    first_landed = dt.datetime(2026, 1, 6, 23, 59, tzinfo=dt.timezone.utc)
    ingest_file(config, project.batch(0), first_landed)
    earlier = first_landed - dt.timedelta(minutes=29)
    assert earlier + dt.timedelta(hours=1) > newest_event(project.batch(1)), "only the landing order is wrong"

    with pytest.raises(BatchRefused) as refused:
        ingest_file(config, project.batch(1), earlier)

    assert str(refused.value).startswith(
        f"{project.batch(1).name}: --as-of 2026-01-06T23:30:00Z is before raw_data version 0 "
        f"({project.batch(0).name}) landed, at 2026-01-06T23:59:00Z: landing times must not go backwards"
    )
    assert refused.value.quarantined is not None and lake.recent_refusals(config)[-1]["reason"] in str(refused.value)
    assert lake.latest_version(uri) == 0
    assert ingest_file(config, project.batch(1), first_landed).version == 1, "the same landing time is not going back"
    DeltaTable(uri).optimize.compact()  # a rewrite lands no batch: its commit time (now) does not count
    assert ingest_file(config, project.batch(3), dt.datetime(2026, 1, 8, 23, 59, tzinfo=dt.timezone.utc)).version == 3


def test_as_of_in_the_future_is_refused_at_ingest(project):
    import datetime as dt

    tomorrow = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)

    with pytest.raises(BatchRefused, match=r"--as-of .* is in the future \(now "):
        ingest_file(project.config, project.batch(0), tomorrow)

    assert lake.latest_version(project.config.table_uri(lake.RAW_TABLE)) is None

"""Landing batches in raw_data: one version per file, refused files quarantined intact, every version readable."""

import pandas as pd
import pyarrow.dataset as ds
import pytest
from deltalake import DeltaTable
from pyarrow.fs import FileSystem

from retrain_assets.core import delta, landing
from retrain_assets.core.landing import BatchRefused, ingest_file


def test_each_file_is_one_version_readable_by_plain_readers(project):
    uri = project.config.table_uri(delta.RAW_TABLE)
    results = [ingest_file(project.config, project.batch(day)) for day in (0, 1, 3)]

    assert [r.version for r in results] == [0, 1, 2]
    for result in results:
        table = DeltaTable(uri, version=result.version)
        assert table.to_pyarrow_table().num_rows == 600 * (result.version + 1)
        filesystem, _ = FileSystem.from_uri(table.file_uris()[0])  # local disk, or S3 from the AWS_* environment
        paths = [FileSystem.from_uri(uri)[1] for uri in table.file_uris()]
        assert ds.dataset(paths, format="parquet", filesystem=filesystem).count_rows() == 600 * (result.version + 1)
    original = pd.read_csv(project.batch(1))
    landed = delta.read_batch(uri, 1).to_pandas()
    assert landed["customer_id"].tolist() == original["customer_id"].tolist()
    assert landed["monthly_charges"].tolist() == pytest.approx(original["monthly_charges"].tolist())
    assert str(landed["event_time"].dtype) == "datetime64[us, UTC]"
    assert DeltaTable(uri).history(1)[0][delta.SOURCE_KEY] == project.batch(3).name


def test_bad_values_land_in_raw(project):
    result = ingest_file(project.config, project.batch(2))  # nulls, out-of-range charges, unknown region

    landed = delta.read_batch(project.config.table_uri(delta.RAW_TABLE), result.version).to_pandas()
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
    assert DeltaTable(config.table_uri(delta.RAW_TABLE)).version() == 0


def test_same_content_twice_is_refused_without_quarantine(project):
    ingest_file(project.config, project.batch(0))

    with pytest.raises(BatchRefused, match="already landed as raw_data version 0"):
        ingest_file(project.config, project.batch(0))
    assert not project.config.quarantine_dir.exists()


def test_batches_are_appends_only_and_a_compaction_is_not_a_batch(project):
    uri = project.config.table_uri(delta.RAW_TABLE)
    for day in (0, 1):
        ingest_file(project.config, project.batch(day))
    DeltaTable(uri).optimize.compact()
    ingest_file(project.config, project.batch(3))

    assert delta.latest_version(uri) == 3
    assert delta.batch_versions(uri, None, 3) == [0, 1, 3]
    assert delta.batch_versions(uri, 1, 3) == [3]
    assert delta.read_batch(uri, 3).num_rows == 600


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
    assert message.startswith(
        f"{path.name}: --as-of {early:%Y-%m-%dT%H:%M:%SZ} is 5 h before the batch's own newest "
        f"'event_time' value {newest:%Y-%m-%dT%H:%M:%SZ}, more than the 1 h of clock skew"
    )
    assert refused.value.quarantined.read_bytes() == path.read_bytes()
    (refusal,) = landing.recent_refusals(config)
    assert refusal["file"] == str(path) and "'event_time'" in refusal["reason"]
    assert delta.latest_version(config.table_uri(delta.RAW_TABLE)) is None
    within_skew = newest - dt.timedelta(minutes=59)
    assert ingest_file(config, path, within_skew).version == 0


def test_as_of_before_the_newest_landed_batch_is_refused_at_ingest(project):
    import datetime as dt

    config = project.config
    uri = config.table_uri(delta.RAW_TABLE)
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
    assert refused.value.quarantined is not None and landing.recent_refusals(config)[-1]["reason"] in str(refused.value)
    assert delta.latest_version(uri) == 0
    assert ingest_file(config, project.batch(1), first_landed).version == 1, "the same landing time is not going back"
    DeltaTable(uri).optimize.compact()  # a rewrite lands no batch: its commit time (now) does not count
    assert ingest_file(config, project.batch(3), dt.datetime(2026, 1, 8, 23, 59, tzinfo=dt.timezone.utc)).version == 3


def test_as_of_in_the_future_is_refused_at_ingest(project):
    import datetime as dt

    tomorrow = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)

    with pytest.raises(BatchRefused, match=r"--as-of .* is in the future \(now "):
        ingest_file(project.config, project.batch(0), tomorrow)

    assert delta.latest_version(project.config.table_uri(delta.RAW_TABLE)) is None


def unreadable_past_the_footer(path, rows: int):
    """A Parquet file of ``rows`` constant values (a few KB: it compresses to almost nothing) whose data pages
    are then overwritten: its footer still says how many rows it holds, but reading any data fails. A refusal
    that names the row limit shows the limit was checked from the footer, before any data was read."""
    import struct

    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"tenure_months": pa.array([7] * rows, pa.int64())}), path)
    data = bytearray(path.read_bytes())
    footer = struct.unpack("<I", data[-8:-4])[0]
    data[4 : len(data) - 8 - footer] = b"\xff" * (len(data) - 12 - footer)
    path.write_bytes(bytes(data))
    return path


def test_parquet_beyond_max_rows_is_refused_from_its_footer_before_reading(project, tmp_path):
    """Finding 3: a 170 KB Parquet file expanded to 40M rows (+620 MB) before it was refused."""
    from retrain_assets_tests.conftest import write_config

    write_config(project, storage={"max_rows": 1000})
    path = unreadable_past_the_footer(tmp_path / "bomb.parquet", 1_000_000)
    assert path.stat().st_size < 10_000

    with pytest.raises(BatchRefused) as refused:
        ingest_file(project.config, path)

    message = str(refused.value)
    assert message.startswith("bomb.parquet: 1,000,000 rows, more than storage.max_rows (1,000)"), message
    assert "its data was not read" in message
    assert delta.latest_version(project.config.table_uri(delta.RAW_TABLE)) is None
    assert landing.recent_refusals(project.config)[-1]["reason"].startswith("bomb.parquet: 1,000,000 rows")


def test_csv_beyond_max_rows_is_refused_without_reading_past_the_limit(project, tmp_path):
    """Rows past the limit are never parsed: a malformed row after it would otherwise be the error."""
    from retrain_assets_tests.conftest import write_config

    write_config(project, storage={"max_rows": 1000})
    text = project.batch(0).read_text()  # 600 rows
    header, body = text.split("\n", 1)
    path = tmp_path / "long.csv"
    path.write_text(header + "\n" + body * 2 + "a,b,c,d,e,f,g,h,i,j,k,l,m,n\n" + body)

    with pytest.raises(BatchRefused) as refused:
        ingest_file(project.config, path)

    assert str(refused.value).startswith(
        "long.csv: more than 1,000 rows, more than storage.max_rows (1,000); read no further"
    )
    write_config(project, storage={"max_rows": 600})
    assert ingest_file(project.config, project.batch(0)).rows == 600, "a file at the limit lands"


def test_file_beyond_max_file_bytes_is_refused_unread_and_not_copied(project):
    from retrain_assets_tests.conftest import write_config

    write_config(project, storage={"max_file_bytes": 1000})
    path = project.batch(0)

    with pytest.raises(BatchRefused) as refused:
        ingest_file(project.config, path)

    assert str(refused.value) == (
        f"{path.name}: {path.stat().st_size:,} bytes, more than storage.max_file_bytes (1,000); not read"
    )
    assert refused.value.quarantined is None and not project.config.quarantine_dir.exists()
    assert delta.latest_version(project.config.table_uri(delta.RAW_TABLE)) is None


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_file_with_more_columns_than_max_columns_is_refused_before_its_data_is_read(project, tmp_path, suffix):
    """Validation time grows faster than the column count (50/200/400 float columns: 3.1/6.9/23.8 s per 1k
    rows in the review): a wide file is refused from its header or footer alone."""
    from retrain_assets_tests.conftest import write_config

    write_config(project, data={"max_columns": len(project.config.data.columns)})
    wide = pd.read_csv(project.batch(0)).assign(**{f"extra_{i}": 1.0 for i in range(50)})
    path = tmp_path / f"wide{suffix}"
    wide.to_csv(path, index=False) if suffix == ".csv" else wide.to_parquet(path, index=False)

    with pytest.raises(BatchRefused) as refused:
        ingest_file(project.config, path)

    assert str(refused.value).startswith(
        f"wide{suffix}: 60 columns, more than data.max_columns (10); its data was not read"
    )


def test_category_column_with_too_many_distinct_values_is_refused(project, tmp_path):
    from retrain_assets_tests.conftest import write_config

    write_config(project, data={"max_category_values": 2})
    with pytest.raises(BatchRefused) as refused:
        ingest_file(project.config, project.batch(0))

    message = str(refused.value)
    assert "'plan' has 3" in message and "more than data.max_category_values (2)" in message
    assert project.batch(0).name in message and "'region'" in message


def test_window_is_read_in_the_scan_with_the_same_rows_as_the_pandas_filter(project):
    """Finding 3: training read all of validated_features, then applied model.window_days in pandas."""
    import datetime as dt

    from deltalake import write_deltalake

    from retrain_assets.core import training
    from retrain_assets_tests.conftest import write_config

    write_config(project, model={"window_days": 2})
    uri = project.config.table_uri(delta.FEATURES_TABLE)
    for day in (0, 1, 3):  # one Delta file per day, as one batch per version
        frame = delta.to_table_schema(pd.read_csv(project.batch(day)), project.config.data.columns, "day")
        write_deltalake(uri, frame, mode="append")
    ref = delta.TableRef(uri, delta.latest_version(uri), 2)
    whole = delta.read_table(uri, ref.version, columns=list(project.config.data.columns))

    read = training.read_window(ref, project.config)

    expected = training.window(whole, project.config)
    assert 0 < len(read) < len(whole)
    pd.testing.assert_frame_equal(read.reset_index(drop=True), expected.reset_index(drop=True))
    newest = whole["event_time"].max()
    assert read["event_time"].min() > newest - dt.timedelta(days=2), "the scan returned only window rows"
    write_config(project, model={"window_days": None})
    assert len(training.read_window(ref, project.config)) == len(whole)


def test_a_refused_file_with_a_240_byte_name_is_quarantined_with_its_reason(project, tmp_path):
    """The quarantine copy's name plus ``.reason.txt`` used to exceed NAME_MAX (255 bytes): OSError, no
    refusal recorded, a copy without its reason."""
    path = tmp_path / ("é" * 60 + "x" * 116 + ".csv")  # 240 bytes in UTF-8, two per é
    assert len(path.name.encode()) == 240
    path.write_bytes(b'customer_id,tenure_months\nC1,"unterminated\n')

    with pytest.raises(BatchRefused) as refused:
        ingest_file(project.config, path)

    kept = refused.value.quarantined
    assert kept is not None and kept.read_bytes() == path.read_bytes()
    note = kept.with_name(kept.name + ".reason.txt")
    assert len(note.name.encode()) <= 255 and kept.suffix == ".csv"
    assert note.read_text().startswith(f"original name: {path.name}\n")
    assert sorted(p.name for p in project.config.quarantine_dir.iterdir()) == sorted([kept.name, note.name])
    [refusal] = landing.recent_refusals(project.config)
    assert refusal["file"] == str(path) and refusal["quarantined"] == str(kept)


def test_refusals_log_skips_a_torn_line_and_says_so(project, caplog):
    missing = project.path.parent / "missing.csv"
    with pytest.raises(BatchRefused):
        ingest_file(project.config, missing)
    with project.config.refusals_log.open("a") as log:
        log.write('{"at": "2026-01-05T00:00:00+00:00", "file": "/tmp/torn')  # a writer died mid-line

    assert [r["file"] for r in landing.recent_refusals(project.config)] == [str(missing)]
    assert "skipped 1 unreadable line" in caplog.text
    with pytest.raises(BatchRefused):  # the next refusal is not glued onto the torn line
        ingest_file(project.config, missing)
    assert [r["file"] for r in landing.recent_refusals(project.config)] == [str(missing)] * 2


@pytest.mark.parametrize(
    "column, validation, shown",
    [
        ("customer_id", {}, False),  # ids are withheld by default
        ("customer_id", {"show_id_samples": True}, True),
        ("tenure_months", {"redact_samples": True}, False),  # every column's values with redact_samples
        ("tenure_months", {}, True),
    ],
)
def test_values_that_do_not_cast_are_quoted_in_a_refusal_only_where_validation_would_show_them(
    project, tmp_path, column, validation, shown
):
    """Finding 7: a refusal quoted up to 3 values that do not cast (``e.g. [...]``), ids included, in
    ``refusals.jsonl``, the quarantine note and `retrain status`, past ``validation.redact_samples`` and
    ``show_id_samples``. Here the id column is declared int, and a batch arrives with one string id."""
    from retrain_assets_tests.conftest import write_config

    columns = {**project.config.data.columns, "customer_id": "int"}
    write_config(project, data={"columns": columns}, validation=validation)
    frame = pd.read_csv(project.batch(0))
    frame["customer_id"] = range(len(frame))
    frame = frame.astype({column: object})
    frame.loc[7, column] = "DISTINCT-4242"
    path = tmp_path / "day0.csv"
    frame.to_csv(path, index=False)

    with pytest.raises(BatchRefused) as refused:
        ingest_file(project.config, path)

    note = refused.value.quarantined.with_name(refused.value.quarantined.name + ".reason.txt").read_text()
    for text in (str(refused.value), project.config.refusals_log.read_text(), note):
        assert f"column {column!r} cannot be cast to int: 1 values, " in text
        assert ("DISTINCT-4242" in text) == shown, text
        assert ("sample withheld (" in text) != shown


@pytest.mark.parametrize("first", ["landed", "refused", "cli"])
def test_the_storage_home_is_created_readable_by_its_owner_only(project, first):
    """Finding 18: under the usual umask 022 the storage home (the lake, quarantined files, refusals,
    models) was created 0755, world-readable. The first ingest, landed or refused, now creates it 0700."""
    import os
    import stat

    config = project.config
    assert not config.home.exists()
    before = os.umask(0o022)
    try:
        if first == "cli":  # `retrain ingest` opens the Dagster instance under the home before landing
            import subprocess
            import sys
            from pathlib import Path

            retrain = Path(sys.executable).parent / "retrain"
            subprocess.run(
                [retrain, "--config", project.path, "ingest", project.batch(0)],
                check=True,
                capture_output=True,
                env={k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"},
            )
        elif first == "landed":
            ingest_file(config, project.batch(0))
        else:
            with pytest.raises(BatchRefused):
                ingest_file(config, project.path.parent / "missing.csv")
    finally:
        os.umask(before)

    assert stat.S_IMODE(config.home.stat().st_mode) == 0o700
    if first != "refused":
        assert delta.latest_version(config.table_uri(delta.RAW_TABLE)) == 0
    else:
        assert config.refusals_log.exists()

"""Ingestion from every kind of source, each a real one: files in tmp_path, a SQLite database, an HTTP server on
127.0.0.1, and moto's S3 server over HTTP (the `slow` tests)."""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from mlplatform.lib.data.ingest import IngestionError, check_columns, data_version, read_source
from mlplatform.lib.spec import SpecError
from mlplatform_tests.servers import HTTPTestServer, S3Bucket, free_port

PROBLEM = {"task": "classification", "target": "species"}
SMALL = pd.DataFrame(
    {
        "species": ["Adelie", "Gentoo", "Chinstrap", "Adelie"],
        "bill_length_mm": [39.1, 47.5, 48.8, 38.6],
        "island": ["Torgersen", "Biscoe", "Dream", "Dream"],
    }
)


def csv_bytes(frame: pd.DataFrame, separator: str = ",") -> bytes:
    return frame.to_csv(index=False, sep=separator).encode()


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def records_json(frame: pd.DataFrame) -> str:
    return frame.to_json(orient="records")


@pytest.fixture
def read(spec_from):
    """read_source for a spec whose problem is SMALL's and whose source has the given fields."""

    def run(uri: str, **source: object) -> pd.DataFrame:
        return read_source(spec_from(problem=PROBLEM, source={"uri": uri, **source}))

    return run


class TestFiles:
    def test_the_bundled_csv(self, spec_from, penguins: pd.DataFrame) -> None:
        frame = read_source(spec_from())

        assert frame.shape == (344, 8)
        pd.testing.assert_frame_equal(frame, penguins, check_dtype=False)

    @pytest.mark.parametrize(
        ("name", "payload"),
        [
            ("small.csv", csv_bytes(SMALL)),
            ("small.tsv", csv_bytes(SMALL, separator="\t")),
            ("small.parquet", parquet_bytes(SMALL)),
            ("small.json", records_json(SMALL).encode()),
            ("small.jsonl", SMALL.to_json(orient="records", lines=True).encode()),
            ("wrapped.json", json.dumps({"count": 4, "penguins": json.loads(records_json(SMALL))}).encode()),
        ],
    )
    def test_one_file_of_each_format(self, tmp_path: Path, read, name: str, payload: bytes) -> None:
        (tmp_path / name).write_bytes(payload)

        frame = read(name)  # relative to the spec file, which is in tmp_path

        pd.testing.assert_frame_equal(frame, SMALL, check_dtype=False)

    def test_a_single_record_json_lines_file(self, tmp_path: Path, read) -> None:
        (tmp_path / "one.jsonl").write_text('{"species": "Adelie", "bill_length_mm": 39.1}\n')

        frame = read("one.jsonl")

        assert frame.to_dict("records") == [{"species": "Adelie", "bill_length_mm": 39.1}]

    def test_json_records_path_reaches_a_nested_list(self, tmp_path: Path, read) -> None:
        document = {"meta": {"pages": 1}, "data": {"items": json.loads(records_json(SMALL)), "tags": ["a"]}}
        (tmp_path / "nested.json").write_text(json.dumps(document))

        frame = read("nested.json", json_records_path="data.items")

        pd.testing.assert_frame_equal(frame, SMALL, check_dtype=False)

    def test_a_declared_format_overrides_the_extension(self, tmp_path: Path, read) -> None:
        (tmp_path / "export.dat").write_bytes(csv_bytes(SMALL))

        with pytest.raises(IngestionError, match="cannot tell the format of .*export.dat.*set source.format"):
            read("export.dat")
        assert len(read("export.dat", format="csv")) == 4

    def test_an_absolute_file_uri(self, tmp_path: Path, read) -> None:
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "small.csv").write_bytes(csv_bytes(SMALL))

        assert len(read(f"file://{tmp_path}/data/small.csv")) == 4

    def test_a_folder_of_csv_files_is_concatenated_in_name_order(self, tmp_path: Path, read) -> None:
        batches = tmp_path / "batches"
        (batches / "late").mkdir(parents=True)
        (batches / "b.csv").write_bytes(csv_bytes(SMALL.iloc[2:]))
        (batches / "a.csv").write_bytes(csv_bytes(SMALL.iloc[:2]))
        # Subfolders are read too; the same columns in another order are aligned to the first file's.
        (batches / "late" / "c.csv").write_bytes(csv_bytes(SMALL.iloc[:1][["island", "species", "bill_length_mm"]]))

        frame = read("batches")

        assert list(frame.columns) == list(SMALL.columns)
        expected = pd.concat([SMALL.iloc[:2], SMALL.iloc[2:], SMALL.iloc[:1]], ignore_index=True)
        pd.testing.assert_frame_equal(frame, expected, check_dtype=False)

    @pytest.mark.parametrize("declared", ["auto", "csv"])
    def test_a_folder_skips_files_that_are_not_data(self, tmp_path: Path, read, declared: str) -> None:
        folder = tmp_path / "export"
        folder.mkdir()
        (folder / "part-0000.csv").write_bytes(csv_bytes(SMALL))
        (folder / "_SUCCESS").write_bytes(b"")
        (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
        if declared == "auto":
            (folder / "README.txt").write_text("exported nightly")

        assert len(read("export", format=declared)) == 4

    def test_a_folder_with_mismatched_columns_names_both_files(self, tmp_path: Path, read) -> None:
        folder = tmp_path / "batches"
        folder.mkdir()
        (folder / "a.csv").write_bytes(csv_bytes(SMALL))
        (folder / "b.csv").write_bytes(csv_bytes(SMALL.rename(columns={"island": "location"})))

        with pytest.raises(IngestionError) as raised:
            read("batches")

        message = str(raised.value)
        assert "b.csv has columns ['bill_length_mm', 'location', 'species']" in message
        assert "unlike" in message and "a.csv" in message and "'island'" in message

    def test_a_missing_path_is_named(self, tmp_path: Path, read) -> None:
        with pytest.raises(IngestionError) as raised:
            read("no/such/file.csv")

        assert str(raised.value) == (
            f"source.uri 'no/such/file.csv': no such file or folder: {tmp_path / 'no' / 'such' / 'file.csv'}"
        )

    def test_an_empty_folder(self, tmp_path: Path, read) -> None:
        (tmp_path / "empty").mkdir()

        with pytest.raises(IngestionError, match=r"the folder .*empty holds no CSV, Parquet or JSON files"):
            read("empty")

    def test_a_file_with_a_header_and_no_rows(self, tmp_path: Path, read) -> None:
        (tmp_path / "header.csv").write_text("species,island\n")

        with pytest.raises(IngestionError, match=r"header.csv: no rows \(columns: species, island\)"):
            read("header.csv")

    @pytest.mark.parametrize(
        ("name", "payload", "reason"),
        [
            ("broken.parquet", b"PAR1 this is not parquet", "cannot parse .*broken.parquet as parquet"),
            ("broken.json", b'[{"species": "Adelie"', "cannot parse .*broken.json as json"),
            ("scalar.json", b"42", "neither an array nor an object"),
            ("numbers.json", b"[1, 2, 3]", "not records"),
            ("two_lists.json", b'{"a": [{"x": 1}], "b": [{"x": 2}]}', "lists under 'a', 'b'.*json_records_path"),
            ("no_list.json", b'{"a": {"x": 1}}', "holds no list.*json_records_path"),
            ("binary.csv", b"\x00\xff\xfe\x00" * 10, "binary.csv: not utf-8 text \\(byte 0xff at offset 1\\)"),
            ("nul.csv", b"a,b\n1,\x00\n", "nul.csv: holds NUL bytes, so it is binary"),
            ("empty.csv", b"", "empty.csv: the file is empty"),
            ("blank.csv", b"\n\n  \n", "blank.csv: the file is empty"),
            ("latin1.json", '[{"island": "Bíscoe"}]'.encode("latin-1"), "latin1.json: not utf-8 text .*encoding"),
        ],
    )
    def test_an_unparseable_file_is_named_with_the_reason(
        self, tmp_path: Path, read, name: str, payload: bytes, reason: str
    ) -> None:
        (tmp_path / name).write_bytes(payload)

        with pytest.raises(IngestionError) as raised:
            read(name)

        assert str(tmp_path / name) in str(raised.value)
        assert raised.match(reason)

    def test_a_missing_json_records_path(self, tmp_path: Path, read) -> None:
        (tmp_path / "nested.json").write_text('{"data": {"items": []}}')

        with pytest.raises(IngestionError, match=r"nested.json: source.json_records_path 'data.rows' is not in"):
            read("nested.json", json_records_path="data.rows")

    def test_dates_arrive_as_datetimes(self, tmp_path: Path, read) -> None:
        """Arrow hands dates over as datetime.date objects, which pandas' string methods choke on."""
        (tmp_path / "seen.csv").write_text("species,seen_on\nAdelie,2024-01-31\nGentoo,\n")
        dated = pd.DataFrame({"species": ["Adelie"], "seen_on": [pd.Timestamp("2024-01-31").date()]})
        (tmp_path / "seen.parquet").write_bytes(parquet_bytes(dated))

        from_csv, from_parquet = read("seen.csv"), read("seen.parquet")

        for frame in (from_csv, from_parquet):
            assert pd.api.types.is_datetime64_any_dtype(frame["seen_on"])
            assert frame["seen_on"].iloc[0] == pd.Timestamp("2024-01-31")
        assert pd.isna(from_csv["seen_on"].iloc[1])

    def test_nested_json_values_arrive_as_json_text(self, tmp_path: Path, read) -> None:
        records = [
            {"species": "Adelie", "tags": ["ringed", "adult"], "site": {"island": "Dream", "nest": 4}},
            {"species": "Gentoo", "tags": [], "site": {"island": "Biscoe", "nest": 7}},
        ]
        (tmp_path / "nested.json").write_text(json.dumps(records))

        frame = read("nested.json")

        assert frame["tags"].tolist() == ['["ringed", "adult"]', "[]"]
        assert frame["site.island"].tolist() == ["Dream", "Biscoe"]  # objects are flattened into columns
        assert len(data_version(frame)) == 16  # lists in cells could not be hashed

    def test_values_of_several_types_arrive_as_text(self, tmp_path: Path, read) -> None:
        """A JSON field that is a number in one record and text in the next: Parquet needs one type per column."""
        records = [{"species": "Adelie", "nest": 12}, {"species": "Gentoo", "nest": "B7"}, {"species": "Adelie"}]
        (tmp_path / "mixed.json").write_text(json.dumps(records))

        frame = read("mixed.json")

        assert frame["nest"].iloc[:2].tolist() == ["12", "B7"]
        assert pd.isna(frame["nest"].iloc[2])
        assert pd.read_parquet(io.BytesIO(parquet_bytes(frame)))["nest"].iloc[:2].tolist() == ["12", "B7"]

    def test_environment_variables_in_a_path(self, tmp_path: Path, read, monkeypatch: pytest.MonkeyPatch) -> None:
        (tmp_path / "landing").mkdir()
        (tmp_path / "landing" / "small.csv").write_bytes(csv_bytes(SMALL))
        monkeypatch.setenv("LANDING", str(tmp_path / "landing"))

        assert len(read("${LANDING}/small.csv")) == 4

    def test_a_path_that_becomes_a_url_from_the_environment(self, read, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DATA_URL", "s3://bucket/penguins.csv")

        with pytest.raises(IngestionError, match=r"'\$\{DATA_URL\}' reads as a path .* becomes a s3:// URL"):
            read("${DATA_URL}")


class TestSQL:
    @pytest.fixture
    def database(self, tmp_path: Path) -> Path:
        path = tmp_path / "penguins.db"
        with sqlite3.connect(path) as connection:
            SMALL.to_sql("penguins", connection, index=False)
        return path

    def test_a_query_against_sqlite(self, read, database: Path) -> None:
        frame = read(f"sqlite:///{database}", query="SELECT * FROM penguins WHERE island != 'Biscoe' ORDER BY rowid")

        pd.testing.assert_frame_equal(frame, SMALL.drop(index=1).reset_index(drop=True))

    def test_the_database_path_can_come_from_the_environment(
        self, read, database: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PENGUIN_DB", str(database))

        assert len(read("sqlite:///${PENGUIN_DB}", query="SELECT species FROM penguins")) == 4

    def test_a_bad_query_names_the_source_and_the_reason(self, read, database: Path) -> None:
        with pytest.raises(IngestionError) as raised:
            read(f"sqlite:///{database}", query="SELECT * FROM puffins")

        assert str(raised.value).startswith(f"source.query on 'sqlite:///{database}': ")
        assert "no such table: puffins" in str(raised.value)

    def test_a_query_returning_nothing(self, read, database: Path) -> None:
        with pytest.raises(IngestionError, match="the source returned no rows"):
            read(f"sqlite:///{database}", query="SELECT * FROM penguins WHERE island = 'Atlantis'")

    def test_a_missing_driver_says_so(self, read) -> None:
        with pytest.raises(IngestionError, match=r"'mssql://db/penguins': its database driver is not installed"):
            read("mssql://db/penguins", query="SELECT 1")


@pytest.fixture(scope="module")
def http_server() -> Iterator[HTTPTestServer]:
    with HTTPTestServer() as server:
        yield server


class TestHTTP:
    @pytest.mark.parametrize(
        ("path", "body", "content_type", "records_path"),
        [
            ("/penguins.csv", csv_bytes(SMALL), "text/csv; charset=utf-8", None),
            ("/export", csv_bytes(SMALL), "text/plain", None),
            ("/api/penguins", records_json(SMALL), "application/json", None),
            (
                "/api/page",
                json.dumps({"next": None, "results": json.loads(records_json(SMALL))}),
                "application/json",
                None,
            ),
            (
                "/api/nested",
                json.dumps({"data": {"penguins": json.loads(records_json(SMALL)), "links": []}}),
                "application/json",
                "data.penguins",
            ),
            ("/files/small.parquet", parquet_bytes(SMALL), "application/octet-stream", None),
        ],
    )
    def test_an_endpoint_answering_data(
        self, read, http_server: HTTPTestServer, path: str, body: bytes | str, content_type: str, records_path: str
    ) -> None:
        url = http_server.route(path, body, content_type)

        frame = read(url, json_records_path=records_path)

        pd.testing.assert_frame_equal(frame, SMALL, check_dtype=False)

    @pytest.mark.parametrize(("status", "reason"), [(404, "Not Found"), (500, "Internal Server Error")])
    def test_an_error_status_is_reported(self, read, http_server: HTTPTestServer, status: int, reason: str) -> None:
        url = http_server.route(f"/failing/{status}", "oops", status=status)

        with pytest.raises(IngestionError) as raised:
            read(url)

        assert str(raised.value) == f"source.uri {url!r}: HTTP {status} {reason}"

    def test_an_unreachable_server(self, read) -> None:
        url = f"http://127.0.0.1:{free_port()}/penguins.csv"

        with pytest.raises(IngestionError, match=rf"source.uri '{url}': unreachable: ConnectionError"):
            read(url)

    def test_a_body_that_is_not_the_announced_format(self, read, http_server: HTTPTestServer) -> None:
        url = http_server.route("/html", "<html>maintenance</html>", "application/json")

        with pytest.raises(IngestionError, match=rf"{url}: the JSON payload is neither an array nor an object"):
            read(url)

    def test_headers_carry_secrets_from_the_environment(
        self, read, http_server: HTTPTestServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        url = http_server.route(
            "/private.csv", csv_bytes(SMALL), "text/csv", required_headers={"Authorization": "Bearer s3cret-token"}
        )
        headers = {"Authorization": "Bearer ${PENGUIN_API_TOKEN}"}

        monkeypatch.setenv("PENGUIN_API_TOKEN", "s3cret-token")
        assert len(read(url, headers=headers)) == 4
        assert http_server.requests[-1][1]["Authorization"] == "Bearer s3cret-token"

        monkeypatch.setenv("PENGUIN_API_TOKEN", "expired")
        with pytest.raises(IngestionError, match="HTTP 401 Unauthorized"):
            read(url, headers=headers)

    def test_an_unset_variable_in_a_header_is_named(
        self, read, http_server: HTTPTestServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        url = http_server.route("/private2.csv", csv_bytes(SMALL), "text/csv")
        monkeypatch.delenv("PENGUIN_API_TOKEN", raising=False)

        with pytest.raises(SpecError) as raised:
            read(url, headers={"Authorization": "Bearer ${PENGUIN_API_TOKEN}"})

        assert str(raised.value) == (
            "source.headers.Authorization: environment variable PENGUIN_API_TOKEN is not set "
            "(referenced as ${PENGUIN_API_TOKEN})"
        )
        assert not any(path == "/private2.csv" for path, _ in http_server.requests)

    def test_a_secret_in_the_url_stays_out_of_the_error(self, read, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PENGUIN_API_KEY", "k3y-that-must-not-leak")
        uri = f"http://127.0.0.1:{free_port()}/penguins.csv?key=${{PENGUIN_API_KEY}}"

        with pytest.raises(IngestionError) as raised:
            read(uri)

        assert "unreachable" in str(raised.value)
        assert "k3y-that-must-not-leak" not in str(raised.value)
        assert raised.value.__cause__ is None


@pytest.mark.slow
class TestS3:
    def test_a_csv_object(self, read, s3_bucket: S3Bucket) -> None:
        uri = s3_bucket.put("raw/penguins.csv", csv_bytes(SMALL))

        pd.testing.assert_frame_equal(read(uri), SMALL)

    def test_a_parquet_object(self, read, s3_bucket: S3Bucket) -> None:
        uri = s3_bucket.put("raw/penguins.parquet", parquet_bytes(SMALL))

        pd.testing.assert_frame_equal(read(uri), SMALL)

    @pytest.mark.parametrize("prefix", ["batches", "batches/"])
    def test_a_prefix_of_several_objects(self, read, s3_bucket: S3Bucket, prefix: str) -> None:
        s3_bucket.put("batches/2024-01.csv", csv_bytes(SMALL.iloc[:1]))
        s3_bucket.put("batches/2024-02.parquet", parquet_bytes(SMALL.iloc[1:3]))
        s3_bucket.put("batches/2024-03/part-0.csv", csv_bytes(SMALL.iloc[3:]))
        s3_bucket.put("batches/_SUCCESS", b"")
        s3_bucket.put("other/ignored.csv", csv_bytes(SMALL))

        pd.testing.assert_frame_equal(read(s3_bucket.uri(prefix)), SMALL, check_dtype=False)

    def test_a_new_object_is_seen_on_the_next_read(self, read, s3_bucket: S3Bucket) -> None:
        """A long-running process (the Dagster daemon) must not read from a stale listing."""
        s3_bucket.put("batches/1.csv", csv_bytes(SMALL))
        assert len(read(s3_bucket.uri("batches"))) == 4

        s3_bucket.put("batches/2.csv", csv_bytes(SMALL))
        new = s3_bucket.put("new.csv", csv_bytes(SMALL.iloc[:1]))

        assert len(read(s3_bucket.uri("batches"))) == 8
        assert len(read(new)) == 1

    def test_the_bucket_can_come_from_the_environment(
        self, read, s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        s3_bucket.put("penguins.csv", csv_bytes(SMALL))
        monkeypatch.setenv("PENGUIN_BUCKET", s3_bucket.name)

        assert len(read("s3://${PENGUIN_BUCKET}/penguins.csv")) == 4

    def test_a_missing_key_is_named(self, read, s3_bucket: S3Bucket) -> None:
        uri = s3_bucket.uri("raw/nothing.csv")

        with pytest.raises(IngestionError) as raised:
            read(uri)

        assert str(raised.value) == f"source.uri {uri!r}: no such file or folder: {uri}"

    def test_a_missing_bucket_is_named(self, read, s3_bucket: S3Bucket) -> None:
        with pytest.raises(IngestionError, match=r"source.uri 's3://no-such-bucket-here/x.csv': no such file"):
            read("s3://no-such-bucket-here/x.csv")

    def test_an_unparseable_object_is_named(self, read, s3_bucket: S3Bucket) -> None:
        uri = s3_bucket.put("raw/broken.parquet", b"not parquet at all")

        with pytest.raises(IngestionError, match=rf"cannot parse {uri} as parquet"):
            read(uri)


@pytest.mark.parametrize(
    ("problem", "field", "column"),
    [
        ({"task": "classification", "target": "kind"}, "problem.target", "kind"),
        ({**PROBLEM, "id_column": "penguin_id"}, "problem.id_column", "penguin_id"),
        ({**PROBLEM, "time_column": "seen_at"}, "problem.time_column", "seen_at"),
        ({**PROBLEM, "drop_columns": ["island", "year"]}, "problem.drop_columns", "year"),
    ],
)
def test_check_columns_names_the_field_and_the_missing_column(
    spec_from, problem: dict, field: str, column: str
) -> None:
    spec = spec_from(problem=problem)

    with pytest.raises(IngestionError) as raised:
        check_columns(spec, SMALL)

    message = str(raised.value)
    assert message.startswith(f"{field}: column {column!r} is not in the data from ")
    assert "(columns: species, bill_length_mm, island)" in message


def test_check_columns_accepts_a_frame_with_every_named_column(spec_from) -> None:
    frame = SMALL.assign(penguin_id=range(4), seen_at=pd.date_range("2024-01-01", periods=4))
    spec = spec_from(
        problem={**PROBLEM, "id_column": "penguin_id", "time_column": "seen_at", "drop_columns": ["island"]}
    )

    check_columns(spec, frame)  # raises on failure


class TestDataVersion:
    def test_the_same_content_gives_the_same_version(self) -> None:
        version = data_version(SMALL)

        assert len(version) == 16 and int(version, 16) >= 0
        assert data_version(SMALL.copy()) == version
        assert data_version(pd.DataFrame(SMALL.to_dict("list"))) == version
        assert data_version(SMALL.set_axis([10, 11, 12, 13])) == version  # the index is not content

    @pytest.mark.parametrize(
        "changed",
        [
            pytest.param(SMALL.assign(bill_length_mm=[39.1, 47.5, 48.8, 38.7]), id="one value"),
            pytest.param(SMALL[["island", "species", "bill_length_mm"]], id="column order"),
            pytest.param(SMALL.iloc[::-1], id="row order"),
            pytest.param(SMALL.rename(columns={"island": "location"}), id="column name"),
            pytest.param(SMALL.iloc[:3], id="a row fewer"),
            pytest.param(SMALL.assign(bill_length_mm=SMALL["bill_length_mm"].astype("float32")), id="dtype"),
        ],
    )
    def test_a_change_gives_another_version(self, changed: pd.DataFrame) -> None:
        assert data_version(changed) != data_version(SMALL)


def test_a_declared_encoding_is_honoured(tmp_path: Path, spec_from) -> None:
    (tmp_path / "latin1.csv").write_bytes("species,island\nAdelie,Bíscoe\n".encode("latin-1"))
    spec = spec_from(
        problem={"task": "classification", "target": "species"},
        source={"uri": str(tmp_path / "latin1.csv"), "encoding": "latin-1"},
    )

    assert read_source(spec)["island"].tolist() == ["Bíscoe"]

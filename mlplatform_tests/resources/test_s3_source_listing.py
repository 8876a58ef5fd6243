"""The new-data sensor lists an S3 source through dagster-aws's ``S3Resource`` (a boto3 client), and must see the
files exactly as the ingest run, which reads them through s3fs, names them: same paths, names, order and kind,
and the same ETags, which decide whether a file is read again. Against moto's server over HTTP."""

from __future__ import annotations

import pytest
from dagster_aws.s3 import S3Resource

from mlplatform.lib.data import ingest
from mlplatform.resources.object_storage import list_source_files

pytestmark = pytest.mark.slow


@pytest.fixture
def landed(s3_bucket):
    for key in ("landing/b.csv", "landing/a.csv", "landing/2024/c.parquet", "landing/.hidden.csv"):
        s3_bucket.put(key, f"x,y\n1,{key}\n".encode())
    s3_bucket.put("landing/notes.txt", b"not data")
    s3_bucket.put("landing-other/d.csv", b"x\n1\n")  # shares the prefix's letters, not its folder
    s3_bucket.put("landing/folder/", b"")  # a console's folder marker
    return s3_bucket


@pytest.mark.parametrize("key", ["landing/", "landing", "landing/a.csv", ""])
def test_the_listing_is_the_one_the_ingest_run_sees(landed, spec_from, key: str) -> None:
    spec = spec_from(source={"uri": landed.uri(key)})

    listed = list_source_files(S3Resource().get_client(), spec)

    expected = ingest.list_files(spec)
    assert (listed.paths, listed.names, listed.is_folder, listed.location) == (
        expected.paths,
        expected.names,
        expected.is_folder,
        expected.location,
    )
    for path in listed.paths:
        assert listed.filesystem.info(path)["ETag"] == expected.filesystem.info(path)["ETag"]
        with listed.filesystem.open(path, "rb") as handle, expected.filesystem.open(path, "rb") as same:
            assert handle.read() == same.read()


def test_a_folder_lists_its_data_files_oldest_name_first(landed, spec_from) -> None:
    listed = list_source_files(S3Resource().get_client(), spec_from(source={"uri": landed.uri("landing/")}))

    assert listed.names == tuple(landed.uri(f"landing/{name}") for name in ("2024/c.parquet", "a.csv", "b.csv"))


def test_a_missing_source_names_itself(landed, spec_from) -> None:
    spec = spec_from(source={"uri": landed.uri("nowhere/")})

    with pytest.raises(ingest.SourceNotFound, match=rf"source.uri '{landed.uri('nowhere/')}': no such file or folder"):
        list_source_files(S3Resource().get_client(), spec)


def test_a_bucket_that_cannot_be_read_names_the_source_and_the_cause(s3_bucket, spec_from) -> None:
    spec = spec_from(source={"uri": "s3://no-such-bucket-here/landing/"})

    with pytest.raises(
        ingest.IngestionError, match=r"source.uri 's3://no-such-bucket-here/landing/': cannot read .*NoSuchBucket"
    ):
        list_source_files(S3Resource().get_client(), spec)

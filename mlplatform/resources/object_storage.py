"""Object storage (S3), configured once per process: every object the platform writes is encrypted at rest.

Every S3 path in the platform is an fsspec path (universal_pathlib's UPath, pandas, ``fsspec.url_to_fs``), and
fsspec builds every s3fs filesystem through one configuration (``fsspec.config.conf``, keyed by protocol).
``configure_object_storage`` puts the encryption the settings name there, as s3fs's ``s3_additional_kwargs``:
s3fs adds them to each call whose API takes them (PutObject, CreateMultipartUpload, CopyObject), so no write
can leave them out. Credentials are never configured here: boto's usual chain (the environment, a profile,
an IAM role) supplies them.

Where Dagster has the concept, its client is dagster-aws's: the new-data sensor lists an S3 source through
``S3Resource`` (``list_source_files``), a boto3 client built from the same chain.
"""

from __future__ import annotations

import functools
import io

import fsspec.config
from botocore.exceptions import BotoCoreError, ClientError
from dagster_aws.s3 import S3Resource

from mlplatform.lib.data import ingest
from mlplatform.lib.spec import ProjectSpec
from mlplatform.settings import Settings


def encryption_arguments(settings: Settings) -> dict[str, str]:
    """The server-side encryption arguments of every S3 write, as boto3's PutObject takes them (also what a
    boto3 client made elsewhere, dagster-aws's say, passes as ``ExtraArgs``)."""
    arguments = {"ServerSideEncryption": settings.s3_encryption}
    if settings.s3_kms_key_id:
        arguments["SSEKMSKeyId"] = settings.s3_kms_key_id
    return arguments


def configure_object_storage(settings: Settings) -> None:
    """Make every s3fs filesystem this process creates from now on write with the settings' encryption.
    Filesystems fsspec has already cached keep their options, which is why the entry points call this before
    any S3 access (``build_resources`` does)."""
    options = fsspec.config.conf.setdefault("s3", {})
    options["s3_additional_kwargs"] = {**options.get("s3_additional_kwargs", {}), **encryption_arguments(settings)}


class ListedObjects:
    """The two filesystem calls batch detection makes (``info``, ``open``; ``lib.data.batches.landed_files``),
    answered from one S3 listing and a boto3 client (dagster-aws's ``S3Resource.get_client()``): an object's
    ETag and size come from the listing, its bytes from a GET, made only for an object the ledger has not seen."""

    def __init__(self, client: object, listing: dict[str, dict]) -> None:
        self._client = client
        self._listing = listing  # "bucket/key" (as s3fs names objects) -> its entry in the listing

    def info(self, path: str) -> dict:
        entry = self._listing[path]
        return {"ETag": entry["ETag"], "size": entry["Size"], "LastModified": entry["LastModified"]}

    def open(self, path: str, mode: str = "rb") -> io.BytesIO:
        if mode != "rb":
            raise ValueError(f"{path}: a listed object is opened for reading only (rb), not {mode!r}")
        bucket, _, key = path.partition("/")
        return io.BytesIO(self._client.get_object(Bucket=bucket, Key=key)["Body"].read())


def list_source_files(client: object, spec: ProjectSpec) -> ingest.DataFiles:
    """The data files of the spec's S3 source, through a boto3 client, named and sorted exactly as
    ``ingest.list_files`` names them through s3fs (the ingest run reads them that way): a prefix with objects
    under it is a folder of batches, else the key is one file. Errors name the source, as there."""
    source = spec.source
    if source.kind != "s3":
        raise ValueError(f"source.uri {source.uri!r} is not in object storage (s3://)")
    location = ingest.source_location(spec, source)
    bucket, _, key = location.removeprefix("s3://").partition("/")
    folder = f"{key.rstrip('/')}/" if key.rstrip("/") else ""
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key.rstrip("/"))
        objects = {item["Key"]: item for page in pages for item in page.get("Contents", [])}
    except (BotoCoreError, ClientError) as exc:  # network, credentials, permissions: name the source, keep the cause
        raise ingest.IngestionError(
            f"source.uri {source.uri!r}: cannot read {location}: {type(exc).__name__}: {exc}"
        ) from exc
    inside = sorted(name for name in objects if name.startswith(folder) and not name.endswith("/"))
    if inside:
        keys = [name for name in inside if ingest.is_data_file(name, source.format)]
        is_folder = True
    elif key in objects:
        keys, is_folder = [key], False
    else:
        raise ingest.SourceNotFound(f"source.uri {source.uri!r}: no such file or folder: {location}")
    listing = {f"{bucket}/{name}": objects[name] for name in keys}
    return ingest.DataFiles(
        ListedObjects(client, listing), location, tuple(listing), tuple(f"s3://{path}" for path in listing), is_folder
    )


@functools.lru_cache(maxsize=8)
def s3_client(endpoint_url: str | None = None, region_name: str | None = None):
    """dagster-aws's S3 client (``S3Resource.get_client()``), one per endpoint and region in a process: building
    one takes about 0.2 s (a boto3 session loading its service model), and Dagster sets resources up again for
    every step. boto3 clients are thread-safe, and refresh an IAM role's credentials themselves. Left None, the
    endpoint and region are boto's own (AWS_ENDPOINT_URL_S3, AWS_REGION, ...) as the first call found them."""
    return S3Resource(endpoint_url=endpoint_url, region_name=region_name).get_client()


class ObjectStore:
    """Whole objects under ``s3://`` URIs through a boto3 client (dagster-aws's ``S3Resource.get_client()``): what
    the IO manager needs of a bucket. Every PUT carries ``encryption`` (``encryption_arguments``): one client,
    configured once, for every object this writes."""

    def __init__(self, client: object, encryption: dict[str, str]) -> None:
        self._client = client
        self._encryption = dict(encryption)

    @staticmethod
    def _split(uri: str) -> tuple[str, str]:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return bucket, key

    def put(self, uri: str, payload: bytes) -> None:
        """One PUT: atomic, readers see the old object or the new one."""
        bucket, key = self._split(uri)
        self._client.put_object(Bucket=bucket, Key=key, Body=payload, **self._encryption)

    def get(self, uri: str) -> bytes | None:
        """The object's bytes; None when there is no such object."""
        bucket, key = self._split(uri)
        try:
            return self._client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except self._client.exceptions.NoSuchKey:
            return None

    def folders(self, uri: str) -> dict[str, str]:
        """The "folders" right under ``uri`` (common prefixes), name -> URI."""
        bucket, key = self._split(uri)
        prefix = f"{key.rstrip('/')}/"
        pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
        names = [entry["Prefix"] for page in pages for entry in page.get("CommonPrefixes", [])]
        return {name[len(prefix) :].rstrip("/"): f"s3://{bucket}/{name.rstrip('/')}" for name in names}

    def delete_folder(self, uri: str) -> None:
        """Every object under ``uri``/, a thousand per request (DeleteObjects' most)."""
        bucket, key = self._split(uri)
        pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{key.rstrip('/')}/")
        keys = [{"Key": item["Key"]} for page in pages for item in page.get("Contents", [])]
        for start in range(0, len(keys), 1000):
            self._client.delete_objects(Bucket=bucket, Delete={"Objects": keys[start : start + 1000], "Quiet": True})

"""Object storage (S3), configured once per process: every object the platform writes is encrypted at rest.

Every S3 path in the platform is an fsspec path (universal_pathlib's UPath, pandas, ``fsspec.url_to_fs``), and
fsspec builds every s3fs filesystem through one configuration (``fsspec.config.conf``, keyed by protocol).
``configure_object_storage`` puts the encryption the settings name there, as s3fs's ``s3_additional_kwargs``:
s3fs adds them to each call whose API takes them (PutObject, CreateMultipartUpload, CopyObject), so no write
can leave them out. Credentials are never configured here: boto's usual chain (the environment, a profile,
an IAM role) supplies them.
"""

from __future__ import annotations

import fsspec.config

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

"""Reading a batch from the spec's source: files, folders, object storage, SQL databases and HTTP APIs."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import PurePosixPath

import pandas as pd

from mlplatform.lib.spec import ProjectSpec, Source, expand_env

HTTP_TIMEOUT_SECONDS = 60
_EXTENSIONS = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet", ".json": "json", ".jsonl": "json"}


class IngestionError(RuntimeError):
    """The source could not be read; the message names the source and the reason."""


def read_source(spec: ProjectSpec) -> pd.DataFrame:
    """Read the whole batch the spec's source currently holds."""
    source = spec.source
    readers = {"file": _read_files, "s3": _read_files, "http": _read_http, "sql": _read_sql}
    frame = readers[source.kind](spec, source)
    if frame.empty:
        raise IngestionError(f"source.uri {source.uri!r}: the source returned no rows")
    return frame


def check_columns(spec: ProjectSpec, frame: pd.DataFrame) -> None:
    """Fail when a column the spec names is not in the data."""
    problem = spec.problem
    named = {"problem.target": [problem.target], "problem.drop_columns": list(problem.drop_columns)}
    if problem.id_column:
        named["problem.id_column"] = [problem.id_column]
    if problem.time_column:
        named["problem.time_column"] = [problem.time_column]
    for field, columns in named.items():
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise IngestionError(
                f"{field}: column {', '.join(map(repr, missing))} is not in the data from {spec.source.uri!r} "
                f"(columns: {', '.join(map(str, frame.columns))})"
            )


def data_version(frame: pd.DataFrame) -> str:
    """A content hash: the same rows and columns, in the same order, give the same version."""
    digest = hashlib.sha256()
    digest.update(json.dumps([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def _format_of(name: str, declared: str) -> str:
    if declared != "auto":
        return declared
    suffix = PurePosixPath(name.split("?")[0]).suffix.lower()
    if suffix not in _EXTENSIONS:
        raise IngestionError(f"source.format: cannot tell the format of {name!r} from its name; set source.format")
    return _EXTENSIONS[suffix]


def _parse(payload: bytes, fmt: str, name: str, records_path: str | None = None) -> pd.DataFrame:
    try:
        if fmt == "csv":
            separator = "\t" if name.lower().endswith(".tsv") else ","
            return pd.read_csv(io.BytesIO(payload), sep=separator, engine="pyarrow")
        if fmt == "parquet":
            return pd.read_parquet(io.BytesIO(payload))
        return _parse_json(payload, records_path)
    except IngestionError:
        raise
    except Exception as exc:  # pandas and pyarrow raise many types for a file they cannot parse
        raise IngestionError(f"cannot parse {name} as {fmt}: {type(exc).__name__}: {exc}") from exc


def _parse_json(payload: bytes, records_path: str | None) -> pd.DataFrame:
    text = payload.decode("utf-8")
    stripped = text.lstrip()
    if not stripped.startswith(("[", "{")):
        raise IngestionError("JSON payload is neither an array nor an object")
    if stripped.startswith("{") and "\n{" in stripped and records_path is None:
        return pd.read_json(io.StringIO(text), lines=True)
    document = json.loads(text)
    if records_path:
        for part in records_path.split("."):
            if not isinstance(document, dict) or part not in document:
                raise IngestionError(f"source.json_records_path: {records_path!r} not found in the JSON document")
            document = document[part]
    if isinstance(document, dict):
        lists = [key for key, value in document.items() if isinstance(value, list)]
        if len(lists) != 1:
            raise IngestionError("the JSON object holds no single list of records; set source.json_records_path")
        document = document[lists[0]]
    if not isinstance(document, list):
        raise IngestionError("the JSON records are not a list")
    return pd.json_normalize(document)


def _read_files(spec: ProjectSpec, source: Source) -> pd.DataFrame:
    import fsspec

    uri = expand_env(source.uri, "source.uri")
    location = str(spec.resolve_path(uri)) if source.kind == "file" else uri
    try:
        filesystem, path = fsspec.core.url_to_fs(location)
        if filesystem.isdir(path):
            files = sorted(
                f for f in filesystem.find(path)
                if source.format != "auto" or PurePosixPath(f).suffix.lower() in _EXTENSIONS
            )
            if not files:
                raise IngestionError(f"source.uri {source.uri!r}: the folder {location} holds no CSV, Parquet or JSON files")
        elif filesystem.isfile(path):
            files = [path]
        else:
            raise IngestionError(f"source.uri {source.uri!r}: no such file or folder: {location}")
        frames = []
        for file in files:
            fmt = _format_of(file, source.format)
            with filesystem.open(file, "rb") as handle:
                frames.append(_parse(handle.read(), fmt, file, source.json_records_path))
    except IngestionError:
        raise
    except Exception as exc:  # network, credentials, permissions: name the source, keep the cause
        raise IngestionError(f"source.uri {source.uri!r}: cannot read {location}: {type(exc).__name__}: {exc}") from exc
    return _concat(frames, files)


def _concat(frames: list[pd.DataFrame], names: list[str]) -> pd.DataFrame:
    if len(frames) == 1:
        return frames[0]
    first = list(frames[0].columns)
    for frame, name in zip(frames[1:], names[1:], strict=True):
        if set(frame.columns) != set(first):
            raise IngestionError(
                f"{name} has columns {sorted(map(str, frame.columns))}, unlike {names[0]} ({sorted(map(str, first))})"
            )
    return pd.concat([f[first] for f in frames], ignore_index=True)


def _read_http(spec: ProjectSpec, source: Source) -> pd.DataFrame:
    import requests

    url = expand_env(source.uri, "source.uri")
    headers = {k: expand_env(v, f"source.headers.{k}") for k, v in source.headers.items()}
    try:
        response = requests.get(url, headers=headers, timeout=HTTP_TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        raise IngestionError(f"source.uri {source.uri!r}: unreachable: {type(exc).__name__}: {exc}") from exc
    if response.status_code != 200:
        raise IngestionError(f"source.uri {source.uri!r}: HTTP {response.status_code} {response.reason}")
    fmt = source.format
    if fmt == "auto":
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if "json" in content_type:
            fmt = "json"
        elif "csv" in content_type or content_type == "text/plain":
            fmt = "csv"
        else:
            fmt = _format_of(url, "auto")
    return _parse(response.content, fmt, url, source.json_records_path)


def _read_sql(spec: ProjectSpec, source: Source) -> pd.DataFrame:
    import sqlalchemy

    url = expand_env(source.uri, "source.uri")
    try:
        engine = sqlalchemy.create_engine(url)
    except Exception as exc:  # a bad URL or a missing driver
        raise IngestionError(f"source.uri {source.uri!r}: {type(exc).__name__}: {exc}") from exc
    try:
        with engine.connect() as connection:
            return pd.read_sql_query(sqlalchemy.text(source.query or ""), connection)
    except Exception as exc:  # unreachable server, bad credentials, bad query
        raise IngestionError(f"source.query on {source.uri!r}: {type(exc).__name__}: {exc}") from exc
    finally:
        engine.dispose()

"""Reading a batch from the spec's source: files, folders, object storage, SQL databases and HTTP APIs."""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from mlplatform.lib.data.index_columns import DROPPED, drop_index_columns
from mlplatform.lib.spec import ProjectSpec, Source, env_references, expand_env

HTTP_TIMEOUT_SECONDS = 60
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
}
_JSON_LINES = (".jsonl", ".ndjson")
# Files a folder may hold beside its data: Spark's _SUCCESS and .crc files, .DS_Store. Arrow skips them too.
_IGNORED_PREFIXES = (".", "_")


class IngestionError(RuntimeError):
    """The source could not be read; the message names the source and the reason."""


class SourceNotFound(IngestionError):
    """No file, folder or object prefix is where the source says (an S3 prefix with no object yet, too)."""


def read_source(spec: ProjectSpec) -> pd.DataFrame:
    """Read the whole batch the spec's source currently holds, without row-index columns (their names are in
    ``frame.attrs[index_columns.DROPPED]``)."""
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


def _parse(
    payload: bytes,
    fmt: str,
    name: str,
    records_path: str | None = None,
    encoding: str = "utf-8",
    text_columns: Collection[str] = (),
) -> pd.DataFrame:
    """One file or response body as a frame; ``name`` is how errors refer to it. A CSV's ``text_columns`` are
    read as written, not as the numbers they may look like (``17851957467e-1`` is a request id, not 1785195746.7)."""
    if not payload.strip():
        raise IngestionError(f"{name}: the file is empty")
    if fmt in ("csv", "json"):
        payload = _as_utf8(payload, name, encoding)
    try:
        if fmt == "csv":
            separator = "\t" if name.lower().endswith(".tsv") else ","
            dtype = {column: "string" for column in text_columns} or None
            frame = pd.read_csv(io.BytesIO(payload), sep=separator, engine="pyarrow", dtype=dtype)
        elif fmt == "parquet":
            frame = pd.read_parquet(io.BytesIO(payload))
        else:
            frame = _parse_json(payload, records_path, lines=name.lower().endswith(_JSON_LINES))
    except IngestionError as exc:
        raise IngestionError(f"{name}: {exc}") from None
    except Exception as exc:  # pandas and pyarrow raise many types for a file they cannot parse
        raise IngestionError(f"cannot parse {name} as {fmt}: {type(exc).__name__}: {exc}") from exc
    if frame.empty:
        raise IngestionError(f"{name}: no rows (columns: {', '.join(map(str, frame.columns)) or 'none'})")
    return _plain_columns(frame)


def _as_utf8(payload: bytes, name: str, encoding: str) -> bytes:
    try:
        text = payload.decode(encoding)
    except UnicodeDecodeError as exc:
        raise IngestionError(
            f"{name}: not {encoding} text (byte {payload[exc.start]:#04x} at offset {exc.start}); "
            f"set source.encoding if the file uses another encoding"
        ) from None
    if "\x00" in text:
        raise IngestionError(f"{name}: holds NUL bytes, so it is binary, not {encoding} text")
    return payload if encoding == "utf-8" else text.encode("utf-8")


def _parse_json(payload: bytes, records_path: str | None, lines: bool) -> pd.DataFrame:
    text = payload.decode("utf-8")
    stripped = text.lstrip()
    if not stripped.startswith(("[", "{")):
        raise IngestionError("the JSON payload is neither an array nor an object")
    if records_path is None and (lines or (stripped.startswith("{") and "\n{" in stripped)):
        return pd.read_json(io.StringIO(text), lines=True)
    document = json.loads(text)
    if records_path:
        for part in records_path.split("."):
            if not isinstance(document, dict) or part not in document:
                raise IngestionError(f"source.json_records_path {records_path!r} is not in the JSON document")
            document = document[part]
    if isinstance(document, dict):
        lists = [key for key, value in document.items() if isinstance(value, list)]
        if len(lists) != 1:
            found = f"lists under {', '.join(map(repr, lists))}" if lists else "no list"
            raise IngestionError(
                f"the JSON object holds {found}, not one list of records; set source.json_records_path"
            )
        document = document[lists[0]]
    if not isinstance(document, list):
        raise IngestionError(f"the JSON records are a {type(document).__name__}, not a list")
    if not all(isinstance(record, dict) for record in document):
        raise IngestionError("the JSON list holds values that are not records (objects)")
    return pd.json_normalize(document)


def _plain_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Dates as datetimes, mixed and nested values as text: what cleaning, hashing and Parquet can handle.

    Arrow hands CSV and Parquet dates over as ``datetime.date`` objects, which pandas treats as opaque. JSON
    gives columns of several types (a field that is a number in one record and text in the next), which
    Parquet cannot store, and nested values (lists, objects), which cannot be hashed or one-hot encoded;
    both become text (nested values as JSON), and cleaning decides what the text holds.
    """
    for column in frame.columns:
        series = frame[column]
        if series.dtype != object:
            continue
        present = series.dropna()
        if present.empty:
            continue
        kind = pd.api.types.infer_dtype(present, skipna=True)  # one pass in C, not a Python loop per value
        if kind == "date":
            frame[column] = pd.to_datetime(series)
        elif kind in ("mixed", "mixed-integer"):
            frame[column] = series.map(_as_text, na_action="ignore")
    return frame


def _as_text(value: object) -> str:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


@dataclass(frozen=True)
class DataFiles:
    """The data files a file or object-storage source holds now."""

    filesystem: object
    location: str  # the source's file or folder, resolved
    paths: tuple[str, ...]  # as the filesystem names them
    names: tuple[str, ...]  # as people read them (s3://bucket/key for object storage)
    is_folder: bool


def source_location(spec: ProjectSpec, source: Source, field: str = "source") -> str:
    """Where a file or S3 source's files are: its URI with the environment's values, a path made absolute."""
    uri = expand_env(source.uri, f"{field}.uri")
    if source.kind != "file":
        return uri
    expanded_scheme = urlparse(uri).scheme
    if len(expanded_scheme) > 1 and expanded_scheme != "file":  # one letter is a Windows drive
        raise IngestionError(
            f"{field}.uri {source.uri!r} reads as a path in the spec but becomes a {expanded_scheme}:// URL "
            f"from the environment; write the scheme in the spec (e.g. s3://${{BUCKET}}/key)"
        )
    return str(spec.resolve_path(uri))


def list_files(spec: ProjectSpec, source: Source | None = None, field: str = "source") -> DataFiles:
    """The data files of a file or S3 source, sorted by name; an error names the source if there are none.
    ``source`` is the spec's own unless another location of files is given (the labels', say), which errors
    name by ``field``."""
    import fsspec

    source = source or spec.source
    location = source_location(spec, source, field)
    try:
        filesystem, path = fsspec.core.url_to_fs(location)
        # A long-running process (the Dagster daemon) must see what the source holds now, not a cached listing.
        filesystem.invalidate_cache()
        is_folder = filesystem.isdir(path)
        if is_folder:
            files = sorted(f for f in filesystem.find(path) if is_data_file(f, source.format))
        elif filesystem.isfile(path):
            files = [path]
        else:
            raise SourceNotFound(f"{field}.uri {source.uri!r}: no such file or folder: {location}")
    except IngestionError:
        raise
    except Exception as exc:  # network, credentials, permissions: name the source, keep the cause
        reason = f"{type(exc).__name__}: {exc}"
        raise IngestionError(f"{field}.uri {source.uri!r}: cannot read {location}: {reason}") from exc
    names = tuple(filesystem.unstrip_protocol(f) if source.kind == "s3" else f for f in files)
    return DataFiles(filesystem, location, tuple(files), names, is_folder)


def read_file(
    spec: ProjectSpec,
    files: DataFiles,
    index: int,
    payload: bytes | None = None,
    *,
    source: Source | None = None,
    field: str = "source",
    text_columns: Collection[str] = (),
) -> tuple[pd.DataFrame, bytes]:
    """One data file as a frame without row-index columns, and its bytes as they arrived (read now unless
    already given); ``source`` and ``field`` as for ``list_files``; ``text_columns`` as for ``_parse``."""
    source = source or spec.source
    path, name = files.paths[index], files.names[index]
    if payload is None:
        try:
            with files.filesystem.open(path, "rb") as handle:
                payload = handle.read()
        except Exception as exc:  # network, credentials, permissions
            reason = f"{type(exc).__name__}: {exc}"
            raise IngestionError(f"{field}.uri {source.uri!r}: cannot read {name}: {reason}") from exc
    fmt = _format_of(name, source.format)
    frame = _parse(payload, fmt, name, source.json_records_path, source.encoding, text_columns)
    return drop_index_columns(frame, spec), payload


def _read_files(spec: ProjectSpec, source: Source) -> pd.DataFrame:
    files = list_files(spec)
    if not files.paths:
        raise IngestionError(
            f"source.uri {source.uri!r}: the folder {files.location} holds no CSV, Parquet or JSON files"
        )
    frames = [read_file(spec, files, index)[0] for index in range(len(files.paths))]
    dropped = list(dict.fromkeys(column for frame in frames for column in frame.attrs[DROPPED]))
    frame = _concat(frames, list(files.names))
    frame.attrs[DROPPED] = dropped
    return frame


def is_data_file(path: str, declared: str) -> bool:
    """Whether a file of a folder source is data: not hidden or temporary, and CSV, Parquet or JSON by its name
    (any file, when the spec declares the format)."""
    name = PurePosixPath(path).name
    if name.startswith(_IGNORED_PREFIXES):
        return False
    return declared != "auto" or PurePosixPath(name).suffix.lower() in _EXTENSIONS


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
        reason = f"{type(exc).__name__}: {exc}"
        hidden = _hide_secrets(reason, source)
        # The exception's text holds the expanded URL; when that carries a secret, the cause must not travel on.
        cause = exc if hidden == reason else None
        raise IngestionError(f"source.uri {source.uri!r}: unreachable: {hidden}") from cause
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
            fmt = _format_of(source.uri, "auto")
    frame = _parse(response.content, fmt, source.uri, source.json_records_path, source.encoding)
    return drop_index_columns(frame, spec)


def _read_sql(spec: ProjectSpec, source: Source) -> pd.DataFrame:
    import sqlalchemy

    url = expand_env(source.uri, "source.uri")
    try:
        engine = sqlalchemy.create_engine(url)
    except ModuleNotFoundError as exc:
        raise IngestionError(
            f"source.uri {source.uri!r}: its database driver is not installed ({exc}); install it, or name an "
            f"installed driver in the URL's scheme (e.g. postgresql+psycopg2://)"
        ) from exc
    except Exception as exc:  # a bad URL or an unknown dialect
        raise IngestionError(f"source.uri {source.uri!r}: {type(exc).__name__}: {exc}") from exc
    try:
        with engine.connect() as connection:
            frame = pd.read_sql_query(sqlalchemy.text(source.query or ""), connection)
    except Exception as exc:  # unreachable server, bad credentials, bad query
        raise IngestionError(f"source.query on {source.uri!r}: {type(exc).__name__}: {exc}") from exc
    finally:
        engine.dispose()
    return drop_index_columns(_plain_columns(frame), spec)


def _hide_secrets(text: str, source: Source) -> str:
    """Put the ``${VAR}`` references back where their values appear in ``text``."""
    written = [source.uri, *source.headers.values()]
    for name in sorted({name for value in written for name in env_references(value)}):
        value = os.environ.get(name, "")
        if len(value) >= 4:  # shorter values would mask unrelated text and are no secret anyway
            text = text.replace(value, f"${{{name}}}")
    return text

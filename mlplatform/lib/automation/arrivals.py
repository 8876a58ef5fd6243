"""What the new-data sensor asks to ingest: the batches a file or object-storage source holds that the ledger
has neither accepted nor quarantined, each named by a run key made of its content.

Dagster launches a run key at most once per sensor, whatever happens to the daemon, so the same bytes are
never ingested twice (dropped again, under another name, or seen again after a restart) while changed bytes
under the same name are a new key, and so a new batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlplatform.lib.data import batches, ingest
from mlplatform.lib.spec import ProjectSpec

WATCHED_KINDS = ("file", "s3")  # an HTTP endpoint or a SQL query can only be known by reading all of it


@dataclass(frozen=True)
class PendingBatch:
    run_key: str  # the same content always gets the same key
    file: str  # what the ingest run's raw_batch config names: a file of a folder, "" for a whole snapshot
    name: str  # the file or folder as people read it
    batch_id: str  # the hash of its bytes


def pending_batches(
    spec: ProjectSpec, ledger: batches.BatchLedger, files: ingest.DataFiles | None = None
) -> list[PendingBatch]:
    """The batches to ingest, oldest name first: each new file of a folder of batches (one per content, the
    first name it landed under), or the whole source of a snapshot when its content is not the current one.
    ``files``: the source's files as the caller listed them (the sensor lists S3 through dagster-aws's client);
    by default ``ingest.list_files``."""
    if spec.source.kind not in WATCHED_KINDS:
        raise ValueError(f"a {spec.source.kind} source ({spec.source.uri}) has no files to watch")
    files = files or ingest.list_files(spec)
    landed = batches.landed_files(spec, ledger, files)
    if batches.appends(spec, files):
        first_of_each = {arrival.batch_id: arrival for arrival in reversed(batches.unknown(ledger, landed))}
        arrivals = sorted(first_of_each.values(), key=lambda arrival: files.paths.index(arrival.path))
        return [PendingBatch(a.batch_id, a.path, a.name, a.batch_id) for a in arrivals]
    if not landed:
        return []
    # A snapshot: one file's content hash is its batch id in the ledger; several files (mode: snapshot on a
    # folder) are one batch whose id the ledger only learns from the rows, so the sensor's cursor remembers it.
    if len(landed) == 1:
        state, name = landed[0].batch_id, landed[0].name
    else:
        listing = "\n".join(f"{arrival.name} {arrival.batch_id}" for arrival in landed)
        state, name = batches.content_id(listing.encode()), files.location
    manifest = ledger.manifest()
    current = next((entry["batch_id"] for entry in reversed(manifest) if not entry["appends"]), None)
    if state == current or ledger.quarantined_batch(state):
        return []
    # The source may come back to an older content after another: the count of accepted batches in the key
    # makes that a new request, while a restart (nothing accepted meanwhile) asks for the same key again.
    return [PendingBatch(f"snapshot:{state}:{len(manifest)}", "", name, state)]


def to_request(pending: list[PendingBatch], requested: list[str]) -> tuple[list[PendingBatch], list[str]]:
    """The pending batches not yet asked for, and the run keys asked for that are still pending (the cursor:
    a key leaves it once its batch is accepted or quarantined, or its file is gone)."""
    asked = set(requested)
    new = [batch for batch in pending if batch.run_key not in asked]
    return new, [batch.run_key for batch in pending if batch.run_key in asked or batch in new]

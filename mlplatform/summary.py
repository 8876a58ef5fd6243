"""What ``mlplatform run`` prints when it ends: the numbers a person wants, or why it failed."""

from __future__ import annotations

import dagster as dg

from mlplatform.commands import command
from mlplatform.resources import local_server
from mlplatform.settings import Settings

GATE = "challenger_beats_champion"


def latest_metadata(instance: dg.DagsterInstance, key: str) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    if event is None or event.asset_materialization is None:
        return {}
    return {name: getattr(value, "value", value) for name, value in event.asset_materialization.metadata.items()}


def render(instance: dg.DagsterInstance, settings: Settings, run_ids: list[str], rejected: list[str]) -> str:
    """The state of the project after these runs, from the instance's latest materializations."""
    raw, accepted = latest_metadata(instance, "raw_batch"), latest_metadata(instance, "accepted_data")
    cleaned = latest_metadata(instance, "cleaned_data")
    training, holdout = latest_metadata(instance, "training_data"), latest_metadata(instance, "holdout_data")
    model, report = latest_metadata(instance, "trained_model"), latest_metadata(instance, "evaluation_report")
    primary = report["primary_metric"]
    marker = {f"holdout_{primary}": "   <- optimised"}
    metric_lines = "\n".join(
        f"    {name.removeprefix('holdout_'):<18} {value:.4f}{marker.get(name, '')}"
        for name, value in report.items()
        if name.startswith("holdout_") and name != "holdout_rows"
    )
    rows = f"{cleaned['dagster/row_count']} rows after cleaning; "
    rows += f"{training['dagster/row_count']} training / {holdout['dagster/row_count']} holdout"
    training_data = f"{accepted['dagster/row_count']} rows from {accepted['batches']} accepted batch(es), "
    training_data += f"data version {accepted['data_version']}"
    candidates = ", ".join(_candidate_names(latest_metadata(instance, "candidate_models"))) or "?"
    registry_lines = _registry_lines(instance, run_ids[-1] if run_ids else "", settings)
    quality = "every batch passed its checks" if not rejected else f"{len(rejected)} batch(es) REJECTED:"
    rejected_lines = "".join(f"\n    {part}" for line in rejected for part in line.splitlines())
    return f"""{len(run_ids)} run(s) done: {", ".join(run_ids)}

  last batch    {raw.get("batch", "?")}: {raw.get("dagster/row_count", "?")} rows, batch {raw.get("batch_id", "?")}
  training data {training_data}
                {rows}
  quality       {quality}{rejected_lines}
  model         {model["estimator"]} (candidate {model.get("candidate", "?")}), chosen by cross-validation
                from {candidates}, trained on {model["training_rows"]} rows
  holdout metrics ({report["holdout_rows"]} rows):
{metric_lines}
  report        {report["report_path"]}
  registry      {registry_lines}
{serving_lines(instance, settings)}  artifacts     {settings.artifact_root}
  instance      {instance.root_directory}

Open the UI on this instance:  {command("dev", settings=settings)}     (then http://127.0.0.1:3000)"""


def serving_lines(instance: dg.DagsterInstance, settings: Settings) -> str:
    """Where the champion is served and shipped, when the graph has those assets."""
    lines = []
    served = latest_metadata(instance, "local_deployment")
    if served and not local_server.is_alive(local_server.RunningServer(**served["server"])):
        again = command("serve", settings=settings)
        lines.append(f"  serving       stopped (it served {served['model_tag']}): `{again}` starts it again")
    elif served:
        token = served["token"]
        reader = f"$(cat {token})" if token != "MLPLATFORM_API_TOKEN" else "$MLPLATFORM_API_TOKEN"
        lines.append(f"  serving       {served['url']} serves {served['model_tag']} (docs: {served['url']}/)")
        lines.append(f'                curl -H "Authorization: Bearer {reader}" \\')
        lines.append(f"                  -H 'Content-Type: application/json' {served['url']}/predict \\")
        lines.append(f"                  -d '{served['example_row']}'")
    image = latest_metadata(instance, "model_image")
    if image:
        lines.append(f"  image         {image['image']} ({image['digest']})")
    cluster = latest_metadata(instance, "kubernetes_deployment")
    if cluster:
        where = f"{cluster['namespace']}/{cluster['deployment']}"
        ready = f"{cluster['replicas_ready']} ready"
        lines.append(f"  kubernetes    {where} serves {cluster['model_tag']}, revision {cluster['revision']}, {ready}")
    return "".join(f"{line}\n" for line in lines)


def _candidate_names(metadata: dict) -> list[str]:
    table = str(metadata.get("candidates", ""))
    return [line.split("|")[1].strip() for line in table.splitlines()[2:] if line.count("|") > 2]


def _registry_lines(instance: dg.DagsterInstance, run_id: str, settings: Settings) -> str:
    challenger, champion = latest_metadata(instance, "challenger_model"), latest_metadata(instance, "champion_model")
    if not challenger:
        return "(nothing stored)"
    lines = [f"stored {challenger['tag']} (data {challenger['data_version']}, code {challenger['code_version']})"]
    if champion.get("tag") == challenger["tag"]:
        lines.append(f"champion is now {champion['tag']}: {champion['reason']}")
    else:
        verdict = gate_verdict(instance, run_id)
        why = verdict.partition(": ")[2] if verdict else "the challenger was not promoted"
        if champion.get("tag"):
            lines.append(f"champion stays {champion['tag']}: {why}")
        else:
            lines.append(f"not promoted, and there is no champion yet: {why}")
        promote = command("promote", challenger["tag"], "--reason", "why it should serve", settings=settings)
        lines.append(f"promote it by hand: {promote}")
    return "\n                ".join(lines)


def gate_verdict(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """The promotion gate's description in this run, if the gate ran."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if evaluation.check_name == GATE:
            return evaluation.description
    return None


DONE, KEPT_CHAMPION, REJECTED, FAILED = "done", "kept the champion", "rejected a batch", "failed"
QUALITY_GATE = "raw_batch_is_valid"


def outcome(result) -> str:
    """What a run came to: DONE; KEPT_CHAMPION when it succeeded and the promotion gate's recorded verdict kept
    the champion (the model was trained, evaluated and stored, it just did not win, or missed a floor with no
    champion to keep); REJECTED when a batch failed its checks or could not be read and was quarantined; FAILED
    for anything else."""
    failed_checks, quarantined, crashed, kept = set(), False, False, False
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            if evaluation.check_name == GATE:
                kept = not evaluation.passed
            elif not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
                failed_checks.add(evaluation.check_name)
        elif event.event_type_value == "STEP_FAILURE":
            causes = _error_chain(event.step_failure_data.error)
            if causes[0] == "DagsterAssetCheckFailedError":
                continue
            if "QuarantinedBatch" in causes:
                quarantined = True
            else:
                crashed = True
    if crashed or failed_checks - {QUALITY_GATE}:
        return FAILED
    if quarantined or QUALITY_GATE in failed_checks:
        return REJECTED
    if not result.success:
        return FAILED
    return KEPT_CHAMPION if kept else DONE


def _error_chain(error) -> list[str]:
    names = []
    while error is not None:
        names.append(error.cls_name)
        error = error.cause
    return names


def render_nothing_new(instance: dg.DagsterInstance, settings: Settings, existing: str, rejected: list[str]) -> str:
    """What ``mlplatform run`` prints when the accepted data, the spec and the code already made a model."""
    accepted, champion = latest_metadata(instance, "accepted_data"), latest_metadata(instance, "champion_model")
    lines = [
        f"nothing new: {existing} was already trained on data version {accepted.get('data_version', '?')} with "
        "this spec and code; nothing was trained or stored",
        "",
        f"  training data {accepted.get('dagster/row_count', '?')} rows from {accepted.get('batches', '?')} "
        "accepted batch(es)",
    ]
    if rejected:
        lines.append(f"  quality       {len(rejected)} batch(es) REJECTED:")
        lines += [f"    {part}" for line in rejected for part in line.splitlines()]
    lines.append(f"  champion      {champion.get('tag', '(none)')}")
    return "\n".join(lines) + "\n" + serving_lines(instance, settings)


def failures(result) -> list[str]:
    """Why a run failed: each failed check's findings, and the error each failed step raised in our code,
    unwrapped from Dagster's "error in op" wrapper (its message already names the underlying cause)."""
    lines = []
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
                lines.append(f"check {evaluation.check_name} failed: {evaluation.description}".replace("\n", "\n    "))
                quarantine = evaluation.metadata.get("quarantine")
                if quarantine is not None:
                    lines.append(f"  the batch is kept in quarantine at {quarantine.value}")
                docs = evaluation.metadata.get("data_docs")
                if docs is not None:
                    lines.append(f"  Great Expectations Data Docs: {docs.value}")
        if event.event_type_value != "STEP_FAILURE":
            continue
        error = event.step_failure_data.error
        if error.cls_name == "DagsterAssetCheckFailedError":
            continue  # the check's own findings are listed above
        while error.cls_name.startswith("Dagster") and error.cause is not None:
            error = error.cause
        # The message reads "package.module.Class: text"; the class's short name is enough.
        text = error.message.strip().partition(f"{error.cls_name}: ")[2] or error.message.strip()
        lines.append(f"{event.step_key}: {error.cls_name}: {text}")
    return lines or ["no step failed; see the run's events in the UI"]

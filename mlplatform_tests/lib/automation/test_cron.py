"""Cron strings are checked when the spec loads, as Dagster's schedules will read them."""

from __future__ import annotations

import pytest

from mlplatform.lib.automation.cron import CronError, check_cron
from mlplatform.lib.spec import SpecError, parse_spec

READABLE = [
    "0 3 * * 1",
    "*/5 * * * *",
    "0 0 L * *",
    "0 0 ? * *",
    "0 0 * * 1#2",
    "0 0 * jan-mar mon-fri",
    "0 0 1 JAN *",
    "0 0 * * SUN",
    "5-1 * * * *",
    "1-5/2 * * * *",
    "0/15 * * * *",
    "0 0 * * 0-7",
    "0 0 29 2 *",
    "@daily",
    "@HOURLY",
    " 0 3 * * 1 ",
]
UNREADABLE = {
    "": "0 field(s)",
    "0 3 * *": "4 field(s)",
    "0 0 * * * *": "6 field(s)",
    "@reboot": "1 field(s)",
    "60 * * * *": "minute field '60': 60 is out of range",
    "* 24 * * *": "hour field",
    "* * 0 * *": "day of month field",
    "* * * 13 *": "month field",
    "* * * * 8": "day of week field",
    "*/0 * * * *": "a step of 0",
    "H * * * *": "'h' is not a number",
    "0 0 * * 1#6": "week number 1-5",
    "0 0 * janx *": "'janx' is not a number or a name",
    "0 0 30 2 *": "February has no day 30",
    "0 0 31 feb *": "February has no day 31",
    "0 0 LW * *": "is not a number",
    "? * * * *": "minute field",
    "1,,2 * * * *": "'' is not a value",
}


@pytest.mark.parametrize("cron", READABLE)
def test_what_dagster_reads_passes(cron: str) -> None:
    assert check_cron(cron) == cron.strip()


@pytest.mark.parametrize(("cron", "message"), UNREADABLE.items())
def test_what_dagster_cannot_read_is_refused_naming_the_field(cron: str, message: str) -> None:
    with pytest.raises(CronError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_cron(cron)


@pytest.mark.parametrize("cron", [*READABLE, *UNREADABLE])
def test_the_check_agrees_with_the_scheduler_that_runs_it(cron: str) -> None:
    # Dagster's own test of a cron string, read (not patched) to hold the spec's check to what the daemon does.
    from dagster._utils.schedules import is_valid_cron_string

    try:
        check_cron(cron)
        readable = True
    except CronError:
        readable = False
    assert readable == is_valid_cron_string(cron)


def test_a_spec_with_an_unreadable_cron_fails_on_that_field(tmp_path) -> None:
    document = {
        "name": "x",
        "problem": {"task": "classification", "target": "y"},
        "source": {"uri": "data.csv"},
        "automation": {"retrain_cron": "0 25 * * *", "timezone": "Europe/Paris"},
    }
    with pytest.raises(SpecError, match=r"automation\.retrain_cron: hour field '25'"):
        parse_spec(document, "spec.yaml", tmp_path)
    document["automation"]["retrain_cron"] = "30 2 * * mon-fri"
    assert parse_spec(document, "spec.yaml", tmp_path).automation.retrain_cron == "30 2 * * mon-fri"

"""Cron strings as Dagster's schedules read them: five fields (minute, hour, day of month, month, day of
week), or a nickname such as ``@daily``. Checked when the spec is loaded, so a typo fails ``check-spec`` with
the field at fault instead of the code location's load."""

from __future__ import annotations

import re

NICKNAMES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# name, lowest, highest, the names a field may use for its numbers
FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, MONTHS),
    ("day of week", 0, 7, DAYS),
)
_ITEM = re.compile(r"^(?P<range>\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(?P<step>\d+))?$")


class CronError(ValueError):
    """A cron string Dagster's schedules cannot read; the message names the field and the value."""


def check_cron(text: str) -> str:
    """``text`` stripped, or CronError saying which field is wrong and what each field takes."""
    cron = text.strip()
    if cron.lower() in NICKNAMES:
        return cron
    fields = cron.split()
    if len(fields) != 5:
        raise CronError(
            f"{text!r} has {len(fields)} field(s); write five (minute hour day-of-month month day-of-week, e.g. "
            f"'0 3 * * 1' for Mondays at 03:00) or one of {', '.join(NICKNAMES)}"
        )
    for value, (name, lowest, highest, names) in zip(fields, FIELDS, strict=True):
        items = value.lower().split(",")
        if len(items) > 1 and ("#" in value or "?" in value):
            raise CronError(f"{name} field {value!r}: # and ? stand alone, not in a list")
        for item in items:
            _check_item(item, value, name, lowest, highest, names)
    if fields[3].lower() in ("2", "feb") and fields[2] in ("30", "31"):
        raise CronError(f"{text!r}: February has no day {fields[2]}, so the schedule would never run")
    return cron


def _check_item(item: str, value: str, name: str, lowest: int, highest: int, names: tuple[str, ...]) -> None:
    def refuse(why: str) -> CronError:
        return CronError(f"{name} field {value!r}: {why} (it takes {lowest}-{highest}, *, ranges a-b, steps /n)")

    if name == "day of week" and "#" in item:  # the n-th weekday of the month, e.g. 1#2: the second Monday
        day, _, nth = item.partition("#")
        if not nth.isdigit() or not 1 <= int(nth) <= 5:
            raise refuse(f"{item!r} needs a week number 1-5 after #")
        item = day
    if (item == "?" and name.startswith("day")) or (item == "l" and name == "day of month"):  # any day; the last
        return
    match = _ITEM.match(item)
    if match is None:
        raise refuse(f"{item!r} is not a value, a range or a step")
    if match["step"] is not None and int(match["step"]) == 0:
        raise refuse("a step of 0 never advances")
    bounds = match["range"]
    if bounds == "*":
        return
    for bound in bounds.split("-"):
        number = names.index(bound) + (lowest if name == "month" else 0) if bound in names else None
        if number is None and not bound.isdigit():
            raise refuse(f"{bound!r} is not a number{' or a name' if names else ''}")
        number = int(bound) if number is None else number
        if not lowest <= number <= highest:
            raise refuse(f"{number} is out of range")

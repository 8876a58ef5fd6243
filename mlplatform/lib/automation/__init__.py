"""What starts runs without a person, decided without Dagster: which landed batches to ingest, when to retrain
(the cooldown, one run in flight), and whether a cron string is one Dagster's schedules can read."""

"""Entry points that run inside pods launched through Dagster Pipes: they talk to the step that launched them
through ``dagster_pipes`` (its extras in, logs and messages out)."""

"""The `score` stage: backends, prompts, the sync runner, batch jobs and label files."""

"""CLI commands of each stage, one module each; `register(app)` adds them to `harness`."""
STAGE_MODULES = ("metrics", "train", "export", "tasks", "compare")

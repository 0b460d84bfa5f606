"""Per-device strategy recommendation: search the compression strategies under each device's budgets."""

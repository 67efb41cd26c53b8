"""Reporters: each consumes the same `GradingRun` records (Gradescope JSON, terminal, class tables)."""

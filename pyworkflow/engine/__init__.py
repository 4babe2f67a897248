"""Event-sourced execution: history replay and the executor that drives workflow code."""

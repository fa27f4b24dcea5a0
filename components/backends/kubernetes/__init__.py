"""The kubernetes backend: `translate` (plan → provider args) and `component` (registers them)."""

"""The backends: each a pure translation (`translate.py`) and the components registering it."""

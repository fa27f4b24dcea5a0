"""Release actions in the style of Helm's pkg/action: an object with its options and a `run`.

Each module holds one action (`up`, `restore`, `rollback`, `promote`, `scale`, and the read-only
`preview`, `history`, `status`, `check`, `render`). An action takes a `base.Configuration` (the
gateway to Pulumi, who confirms, where progress goes), and `run()` returns a result dataclass
or raises an `msops.errors.MsopsError`. Nothing here knows typer or a terminal, so tests run
actions directly. `steps` holds the steps several actions share.
"""

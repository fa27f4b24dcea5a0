"""The policy pack Pulumi runs: only builds the PolicyPack, which serves the rules over gRPC."""

from pulumi_policy import EnforcementLevel, PolicyPack

try:
    from policies import rules
except ModuleNotFoundError:
    # Published on its own (`pulumi policy publish`), the pack's directory is the import root.
    import rules  # type: ignore[no-redef]

PolicyPack(
    name="msops",
    # Every policy sets its own level; this only covers a policy added without one.
    enforcement_level=EnforcementLevel.ADVISORY,
    policies=rules.ALL,
)

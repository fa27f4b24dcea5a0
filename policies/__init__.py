"""msops' policy pack: the rules live in `policies.rules`; `__main__` only serves them to Pulumi."""

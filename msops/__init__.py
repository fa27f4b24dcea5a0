"""msops: operations-as-code for microservices on Pulumi."""

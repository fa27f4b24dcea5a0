"""Demo HTTP microservice that msops deploys in its demo stacks."""

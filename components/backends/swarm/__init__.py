"""The swarm backend: replicated docker services on a Docker Swarm, behind the routing mesh."""

"""Pulumi components of msops: the stack config model, the platform and its three backends."""

"""Pulumi program: load the stack config, build the platform, export its outputs."""

from components.platform import run

run()

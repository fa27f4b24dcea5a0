"""The backend-neutral plan of one stack: `build(config, stack=...)` → `StackPlan`."""

from components.plan.builder import build
from components.plan.model import StackPlan

__all__ = ["StackPlan", "build"]

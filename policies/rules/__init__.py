"""msops' policies as plain functions, for `pulumi preview --policy-pack` and `msops check`.

One module per area (images, security, resources, health, availability, monitoring, database,
exposure), each holding its policies; `pack` assembles them into `ALL` and runs them offline.
The neutral view of a resource they all read is in `view`, `containers` and `workloads`.
"""

from .availability import ENVIRONMENT_TAG
from .config import LEVELS, PolicyConfigError
from .pack import ALL, WHY, Violation, evaluate, mandatory, read_policy_config, resolve_config

__all__ = [
    "ALL",
    "ENVIRONMENT_TAG",
    "LEVELS",
    "WHY",
    "PolicyConfigError",
    "Violation",
    "evaluate",
    "mandatory",
    "read_policy_config",
    "resolve_config",
]

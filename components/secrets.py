"""Secret values a stack needs: database passwords (given or generated) and named secrets."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pulumi
import pulumi_random as random

from components.plan import model
from components.spec import StackConfig


def config_secret_keys(keys: Iterable[str]) -> set[str]:
    """The config keys Pulumi hands the program as secrets: per top-level key, as the engine
    marks them (PULUMI_CONFIG_SECRET_KEYS) or the Automation API and the mocks set them."""
    from_env = set(pulumi.runtime.config.get_config_secret_keys_env())
    return {k for k in keys if k in from_env or pulumi.runtime.config.is_config_secret(k)}


@dataclass(frozen=True)
class StackSecrets:
    """Every secret a backend may hand to a container, always as a secret Output."""

    db_passwords: dict[str, pulumi.Output[str]]
    named: dict[str, pulumi.Output[str]]
    external_db_urls: dict[str, pulumi.Output[str]]
    plan: model.StackPlan

    @classmethod
    def create(
        cls, config: StackConfig, plan: model.StackPlan, parent: pulumi.Resource
    ) -> StackSecrets:
        """Read the configured secrets and generate a password for each database lacking one."""
        passwords: dict[str, pulumi.Output[str]] = {}
        external: dict[str, pulumi.Output[str]] = {}
        for name, db in config.databases.items():
            if db.external_url is not None:
                external[name] = pulumi.Output.secret(db.external_url.get_secret_value())
            elif db.password is not None:
                passwords[name] = pulumi.Output.secret(db.password.get_secret_value())
            else:
                # Kept in state, so it stays stable across updates; special characters are
                # left out because they would need escaping inside DATABASE_URL. Protected
                # like the data volume: `msops destroy` (--exclude-protected) keeps it, so
                # the next `up` opens the kept data with the password it was created with.
                generated = random.RandomPassword(
                    f"{name}-db-password",
                    length=32,
                    special=False,
                    opts=pulumi.ResourceOptions(parent=parent, protect=True),
                )
                passwords[name] = pulumi.Output.secret(generated.result)
        named = {k: pulumi.Output.secret(v.get_secret_value()) for k, v in config.secrets.items()}
        return cls(passwords, named, external, plan)

    def database_url(self, db_name: str) -> pulumi.Output[str]:
        """The DATABASE_URL of a database (a secret: it holds the password)."""
        if db_name in self.external_db_urls:
            return self.external_db_urls[db_name]
        db = self.plan.database(db_name)
        assert db is not None, f"no database {db_name!r} in the plan"
        return pulumi.Output.secret(
            pulumi.Output.concat(
                "postgresql://",
                db.user,
                ":",
                self.db_passwords[db_name],
                "@",
                db.host,
                f":{db.port}/",
                db_name,
            )
        )

    def values(self, workload: model.Workload) -> dict[str, pulumi.Output[str]]:
        """The secret environment of a workload, by variable name."""
        return {
            s.var: self.named[s.ref] if s.kind == "secret" else self.database_url(s.ref)
            for s in workload.secret_env
        }

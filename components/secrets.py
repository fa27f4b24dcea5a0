"""Secret values a stack needs: database passwords (given or generated) and named secrets."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_random as random

from components.spec import Service, StackConfig


@dataclass(frozen=True)
class StackSecrets:
    """Every secret a backend may hand to a container, always as a secret Output."""

    db_passwords: dict[str, pulumi.Output[str]]
    named: dict[str, pulumi.Output[str]]
    external_db_urls: dict[str, pulumi.Output[str]]

    @classmethod
    def create(cls, spec: StackConfig, parent: pulumi.Resource) -> StackSecrets:
        """Read the configured secrets and generate a password for each database lacking one."""
        passwords: dict[str, pulumi.Output[str]] = {}
        external: dict[str, pulumi.Output[str]] = {}
        for name, db in spec.databases.items():
            if db.external_url is not None:
                external[name] = pulumi.Output.secret(db.external_url.get_secret_value())
            elif db.password is not None:
                passwords[name] = pulumi.Output.secret(db.password.get_secret_value())
            else:
                # Kept in state, so it stays stable across updates; special characters are
                # left out because they would need escaping inside DATABASE_URL.
                generated = random.RandomPassword(
                    f"{name}-db-password",
                    length=32,
                    special=False,
                    opts=pulumi.ResourceOptions(parent=parent),
                )
                passwords[name] = pulumi.Output.secret(generated.result)
        named = {k: pulumi.Output.secret(v.get_secret_value()) for k, v in spec.secrets.items()}
        return cls(passwords, named, external)

    def database_url(self, spec: StackConfig, db_name: str, host: str) -> pulumi.Output[str]:
        """The DATABASE_URL of a database reached at `host` (a secret: it holds the password)."""
        if db_name in self.external_db_urls:
            return self.external_db_urls[db_name]
        user = spec.databases[db_name].user
        return pulumi.Output.secret(
            pulumi.Output.concat(
                "postgresql://", user, ":", self.db_passwords[db_name], "@", host, ":5432/", db_name
            )
        )

    def service_env(
        self, spec: StackConfig, svc: Service, db_host: str | None = None
    ) -> dict[str, pulumi.Input[str]]:
        """The environment of a service: plain env, secretEnv, and DATABASE_URL when it has one."""
        env: dict[str, pulumi.Input[str]] = dict(svc.env)
        env.update({var: self.named[secret] for var, secret in svc.secret_env.items()})
        if svc.database is not None:
            env["DATABASE_URL"] = self.database_url(spec, svc.database, db_host or svc.database)
        return env

"""Pulumi Deployments for every msops stack: previews on pull requests, push-to-deploy for dev,
and a daily drift check (a refresh preview) of each stack."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pulumi
import pulumi_pulumiservice as service
from ruamel.yaml import YAML

from msops.stackfiles import list_stacks

REPO_ROOT = Path(__file__).resolve().parent.parent
STACKS_DIR = REPO_ROOT / "stacks"

# A change to these can alter every stack's program, so each stack's deployments watch them
# besides its own stack file (the same list as .github/workflows/preview.yml).
SHARED_PATHS = (
    "components/**",
    "policies/**",
    "__main__.py",
    "Pulumi.yaml",
    "pyproject.toml",
    "uv.lock",
)

# The executor image need not have uv. It goes onto PATH, where Pulumi's uv toolchain
# (../Pulumi.yaml) finds it too; then the environment is exactly the lock, so Deployments' own
# dependency install is turned off.
PRE_RUN_COMMANDS = (
    "command -v uv >/dev/null 2>&1"
    " || curl -LsSf https://astral.sh/uv/install.sh | env UV_UNMANAGED_INSTALL=/usr/local/bin sh",
    "uv sync --locked --no-dev",
)

REPOSITORY = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
# Daily at 06:00 UTC, before a working day starts; the same time as .github/workflows/drift.yml.
DRIFT_SCHEDULE = "0 6 * * *"
DRIFT_OFF = "off"
_CRON_FIELD = r"[0-9*/,A-Za-z-]+"
CRON = re.compile(rf"{_CRON_FIELD}( {_CRON_FIELD}){{4}}")


def project_name(pulumi_yaml: Path) -> str:
    """The `name:` of the msops Pulumi project, whose stacks get the deployment settings."""
    doc = YAML(typ="safe").load(pulumi_yaml.read_text()) or {}
    return str(doc["name"])


def git_ref(branch: str) -> str:
    """Deployments takes a full ref; a bare branch name means refs/heads/<name>."""
    return branch if branch.startswith("refs/") else f"refs/heads/{branch}"


def stack_paths(stack: str) -> list[str]:
    """The repo paths whose change starts a deployment (or a PR preview) of this stack."""
    return [f"stacks/Pulumi.{stack}.yaml", *SHARED_PATHS]


def stack_environment(
    variables: pulumi.Output[Any] | None, stack: str
) -> pulumi.Output[dict[str, str]] | None:
    """This stack's entry of the secret `environmentVariables` map, kept secret."""
    if variables is None:
        return None
    return variables.apply(
        lambda by_stack: {str(k): str(v) for k, v in ((by_stack or {}).get(stack) or {}).items()}
    )


def drift_schedule(config: pulumi.Config) -> str | None:
    """The cron expression of the stacks' drift checks; None when `driftSchedule` is off."""
    cron = config.get("driftSchedule") or DRIFT_SCHEDULE
    if cron == DRIFT_OFF:
        return None
    if not CRON.fullmatch(cron):
        raise pulumi.RunError(
            f"{config.full_key('driftSchedule')} must be a cron expression of five fields "
            f"(e.g. {DRIFT_SCHEDULE!r}, daily at 06:00 UTC) or {DRIFT_OFF!r}, not {cron!r}"
        )
    return cron


def stack_deployments(
    stack: str,
    *,
    organization: str,
    project: str,
    repository: str,
    branch: str,
    deploy_on_push: bool,
    variables: pulumi.Output[Any] | None,
    drift_cron: str | None,
) -> dict[str, Any]:
    """One stack's DeploymentSettings and drift schedule; returns the stack's summary."""
    settings = service.DeploymentSettings(
        stack,
        organization=organization,
        project=project,
        stack=stack,
        vcs=service.DeploymentSettingsVcsArgs(
            provider="github",
            repository=repository,
            deploy_commits=deploy_on_push,
            preview_pull_requests=True,
            paths=stack_paths(stack),
        ),
        source_context=service.DeploymentSettingsSourceContextArgs(
            git=service.DeploymentSettingsGitSourceArgs(branch=branch, repo_dir="/"),
        ),
        operation_context=service.DeploymentSettingsOperationContextArgs(
            pre_run_commands=list(PRE_RUN_COMMANDS),
            options=service.OperationContextOptionsArgs(skip_install_dependencies=True),
            environment_variables=stack_environment(variables, stack),
        ),
    )
    if drift_cron is not None:
        # A drift run is a refresh preview (as `msops drift`), deployed with the settings above,
        # which Pulumi Cloud needs first. Never auto-remediated: a person decides between
        # `msops up` (put it back) and `msops refresh` (keep the change).
        service.DriftSchedule(
            f"{stack}-drift",
            organization=organization,
            project=project,
            stack=stack,
            schedule_cron=drift_cron,
            auto_remediate=False,
            opts=pulumi.ResourceOptions(depends_on=[settings]),
        )
    return {
        "stack": settings.stack,
        "deployCommits": deploy_on_push,
        "previewPullRequests": True,
        "driftSchedule": drift_cron,
    }


def main() -> None:
    config = pulumi.Config()
    repository = config.require("repository")
    if not REPOSITORY.fullmatch(repository):
        raise pulumi.RunError(
            f"{config.full_key('repository')} must name a GitHub repository as owner/name "
            f"(e.g. msops/msops), not {repository!r}"
        )
    organization = config.get("organization") or pulumi.get_organization()
    if not organization:
        raise pulumi.RunError(
            f"no Pulumi organization: set {config.full_key('organization')} "
            "(the organization that owns the msops stacks)"
        )
    project = config.get("project") or project_name(REPO_ROOT / "Pulumi.yaml")
    branch = git_ref(config.get("branch") or "main")

    stacks = list_stacks(STACKS_DIR)
    if not stacks:
        raise pulumi.RunError(f"no stack files (Pulumi.<stack>.yaml) in {STACKS_DIR}")
    push_to_deploy = config.get_object("pushToDeploy")
    deploy_on_push = set(["dev"] if push_to_deploy is None else push_to_deploy)
    unknown = sorted(deploy_on_push - set(stacks))
    if unknown:
        raise pulumi.RunError(
            f"{config.full_key('pushToDeploy')} names stacks with no stack file: "
            f"{', '.join(unknown)} (stacks: {', '.join(stacks)})"
        )
    # Per-stack variables for the deployment (e.g. DOCKER_HOST for a swarm stack), set with
    # `pulumi config set --secret --path 'environmentVariables.<stack>.<NAME>' <value>`.
    variables = config.get_secret_object("environmentVariables")

    drift_cron = drift_schedule(config)
    summary = {
        stack: stack_deployments(
            stack,
            organization=organization,
            project=project,
            repository=repository,
            branch=branch,
            deploy_on_push=stack in deploy_on_push,
            variables=variables,
            drift_cron=drift_cron,
        )
        for stack in stacks
    }
    pulumi.export("organization", organization)
    pulumi.export("project", project)
    pulumi.export("stacks", summary)


main()

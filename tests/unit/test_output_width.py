"""Off a terminal msops never wraps: whole lines for grep, whole URNs, tab-separated tables."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from msops import cli, display
from tests import fakes

pytestmark = pytest.mark.timeout(120)

LONG_IMAGE = "registry.internal.example.com/platform/payments/msops-demo-with-a-long-name:1.1.0"
LONG_URN = (
    "urn:pulumi:dev::msops::msops:docker:Service$msops:docker:Replicas$"
    "docker:index/container:Container::dev-web-replica-with-a-long-name-1"
)
BOXES = set("│┃━─┏┓┗┛╇╈┡┩")


@pytest.fixture
def stacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = fakes.stack_copies(tmp_path, monkeypatch)
    (directory / "Pulumi.dev.yaml").write_text(fakes.dev_stack_text())
    monkeypatch.setattr(cli, "interactive", lambda: False)
    # What a narrow terminal would say; off a terminal it must not matter.
    monkeypatch.setenv("COLUMNS", "80")
    return directory


@pytest.fixture
def gw(stacks: Path, monkeypatch: pytest.MonkeyPatch) -> fakes.FakeGateway:
    history = fakes.realistic_history()
    last = history[-1]
    values = fakes.dev_values(LONG_IMAGE, 2, fakes.API_KEYS[-1])
    history.append(
        fakes.Update(
            kind="update",
            result="succeeded",
            start_time=last.start_time + timedelta(hours=1),
            message="the long image",
            version=0,
            config=fakes.entries(values, {"msops:secrets"}),
        )
    )
    gateway = fakes.FakeGateway(stacks, {"dev": history})
    monkeypatch.setattr(cli, "make_gateway", lambda: gateway)
    return gateway


def invoke(*args: str) -> Result:
    outcome = CliRunner().invoke(cli.app, list(args))
    assert "Traceback" not in outcome.output, outcome.output
    return outcome


def test_history_piped_to_grep_finds_whole_rows(gw: fakes.FakeGateway) -> None:
    outcome = invoke("history", "dev")
    rows = [line.split("\t") for line in outcome.stdout.splitlines() if "msops/demo:1.1.0" in line]
    # Releases 2 and 4 pin 1.1.0 (4 is a refresh): each a whole row, its number first.
    assert outcome.exit_code == 0 and [row[0] for row in rows] == ["4", "2"], outcome.stdout


def cells(out: str, needle: str) -> dict[str, str]:
    """The one row of a plain table that holds `needle`, by column name (the header row)."""
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("#\t")).split("\t")
    (row,) = [line for line in lines if needle in line]
    assert len(row.split("\t")) == len(header), row
    return dict(zip(header, row.split("\t"), strict=True))


def test_history_keeps_a_long_image_on_one_line(gw: fakes.FakeGateway) -> None:
    row = cells(invoke("history", "dev").stdout, LONG_IMAGE)
    assert (row["#"], row["Time (UTC)"], row["Images"]) == (
        "15",
        "2025-03-01 23:00:00",
        f"web={LONG_IMAGE}",
    )


def test_history_off_a_terminal_has_no_box_characters(gw: fakes.FakeGateway) -> None:
    out = invoke("history", "dev").stdout
    assert not BOXES & set(out), out
    assert out.splitlines()[0] == "Releases of dev" and out.splitlines()[1].startswith("#\tTime")


def test_status_keeps_a_long_image_whole(gw: fakes.FakeGateway, stacks: Path) -> None:
    path = stacks / "Pulumi.dev.yaml"
    path.write_text(path.read_text().replace("msops/demo:1.4.0", LONG_IMAGE))
    out = invoke("status", "dev").stdout
    assert any(line.split("\t")[:2] == ["web", LONG_IMAGE] for line in out.splitlines()), out


def test_a_violations_urn_is_never_broken(stacks: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = fakes.Violation("advisory")
    found.urn = LONG_URN
    found.message = " ".join(["a message long enough that a narrow console would wrap it"] * 2)
    monkeypatch.setattr(cli, "_policies", lambda graph, stack, config: [found])
    out = invoke("check", "dev").stdout
    assert f"      {LONG_URN}" in out.splitlines(), out
    assert any(line.endswith(found.message) for line in out.splitlines()), out


def test_a_stack_file_diff_goes_out_as_a_patch(
    gw: fakes.FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "_policies", lambda graph, stack, config: [])
    out = invoke("scale", "dev", "web", "3", "--yes").stdout
    assert "+++ b/stacks/Pulumi.dev.yaml\n" in out and "\n+      replicas: 3\n" in out, out


# --- the table itself ----------------------------------------------------------------------------


def rows() -> display.Rows:
    table = display.Rows("Releases of dev", "#", "Images")
    table.add_row("1", "web=msops/demo:1.0.0\napi=msops/api:2.0.0")
    table.add_row("2", "")
    return table


def test_rows_off_a_terminal_are_tab_separated() -> None:
    out = io.StringIO()
    Console(file=out, width=20, soft_wrap=True).print(rows())
    assert out.getvalue() == (
        "Releases of dev\n#\tImages\n1\tweb=msops/demo:1.0.0 api=msops/api:2.0.0\n2\t-\n"
    )


def test_rows_at_a_terminal_are_a_boxed_table() -> None:
    out = io.StringIO()
    Console(file=out, force_terminal=True, width=60).print(rows())
    assert BOXES & set(out.getvalue()) and "\t" not in out.getvalue()


def test_a_console_off_a_terminal_does_not_wrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    console = display.console()
    buffer = io.StringIO()
    console.file = buffer
    console.print("x" * 200)
    assert buffer.getvalue() == "x" * 200 + "\n"


def test_a_console_at_a_terminal_still_wraps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("COLUMNS", "40")
    console: Any = display.console()
    console.file = io.StringIO()
    console.print("word " * 20)
    assert max(len(line) for line in console.file.getvalue().splitlines()) <= 40


def test_a_urn_is_not_folded_at_a_terminal_either() -> None:
    from msops.drift import Drifted, DriftReport

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=60, color_system=None)
    report = DriftReport(
        "dev", (Drifted(LONG_URN, "docker:index/container:Container", "w", "gone"),), 3
    )
    display.print_drift(console, report)
    assert f"      {LONG_URN}\n" in out.getvalue()


def test_a_time_in_json_is_rfc3339_with_its_zone(capsys: pytest.CaptureFixture[str]) -> None:
    from datetime import datetime

    cli._echo_json({"at": datetime(2025, 3, 1, 9, 0)})
    assert '"at": "2025-03-01T09:00:00Z"' in capsys.readouterr().out

"""The one exception family msops raises for users; each kind carries its documented exit code."""

from __future__ import annotations


class MsopsError(Exception):
    """A failure to report as one message and an exit code, never as a traceback."""

    exit_code = 1


class OperationFailed(MsopsError):
    """The operation was attempted and failed (engine error, failed update, missing tool)."""

    exit_code = 1


class BadInput(MsopsError):
    """Bad input or config: an unknown stack, service or release, or an invalid config."""

    exit_code = 2


class ConfigInvalid(BadInput):
    """A stack config that does not validate; `problems` holds one line per mistake."""

    def __init__(self, stack: str, problems: list[str]) -> None:
        from components.spec import problems_text

        self.stack = stack
        self.problems = problems
        super().__init__(problems_text(stack, problems))


class ReleaseInvalid(ConfigInvalid):
    """A recorded release whose config does not validate against today's schema.

    History holds configs as they were; the schema may have moved on since (a key renamed or
    removed). Re-applying one is refused before anything is written, naming the release.
    """

    def __init__(self, stack: str, release: int, problems: list[str]) -> None:
        super().__init__(stack, problems)
        self.release = release
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        lines = "\n".join(f"  - {p}" for p in problems)
        self.args = (
            f"release {release} of stack {stack!r} does not validate against today's config "
            f"schema ({count}), so nothing was written:\n{lines}",
        )


class SchemaRefused(BadInput):
    """A rollback that would run a release on a database schema newer than it needs, refused
    before anything is written; the message names both versions and the ways out."""


class StackLocked(MsopsError):
    """Another update holds the stack's lock."""

    exit_code = 3


class VerificationFailed(MsopsError):
    """An --atomic release failed verification and the last good release was restored."""

    exit_code = 4

"""`msops add-service`: a new service block in a stack file, checked before it is written."""

from __future__ import annotations

from dataclasses import dataclass

from msops import scaffold, stackfiles
from msops.actions import steps
from msops.actions.base import Configuration, Violation
from msops.errors import BadInput, OperationFailed
from msops.stackfiles import StackFileError


@dataclass(frozen=True)
class AddServiceResult:
    """The service added, whether the file was written (not on --dry-run), and the policies'
    findings on the stack with it (None: the pack is not installed)."""

    stack: str
    service: str
    written: bool
    violations: tuple[Violation, ...] | None


@dataclass
class AddService:
    """Add `service` to the stack file with the documented defaults and their comments.

    The stack file must validate before and after; the edit is written only when the policy
    pack finds no mandatory violation on the offline synth, so what `add-service` writes
    passes `msops check`. Comments and key order stay; the diff is shown.
    """

    cfg: Configuration
    stack: str
    service: str
    image: str
    port: int | None = None
    dry_run: bool = False

    def run(self) -> AddServiceResult:
        cfg, stack, name = self.cfg, self.stack, self.service
        loaded = steps.load(cfg, stack)
        doc = loaded.doc
        if name in loaded.spec.services:
            raise BadInput(f"service {name!r} is already in stack {stack!r}; edit it there")
        services = doc.config.get(stackfiles.SERVICES_KEY)
        if not hasattr(services, "yaml_set_comment_before_after_key"):
            raise StackFileError(f"{doc.path.name}: {stackfiles.SERVICES_KEY} must be a mapping")
        unit = scaffold.indent_unit(doc.original)
        services[name] = scaffold.service_block(self.image, self.port, indent=3 * unit, unit=unit)
        services.yaml_set_comment_before_after_key(
            name,
            before=f"{name}: added by `msops add-service`; every key is in docs/config.md.",
            indent=2 * unit,
        )
        edit = steps.edited(doc)
        steps.show(cfg, edit)
        violations = steps.check_policies(cfg, edit.values, stack)
        blocking = steps.mandatory(violations)
        if blocking:
            raise OperationFailed(
                f"{len(blocking)} mandatory policy violation(s) with service {name!r} added; "
                f"stacks/{doc.path.name} was left as it was. Each is listed above with how to "
                "fix it: pass the options it needs, or add the service and then edit its block"
            )
        written = False if self.dry_run else doc.save()
        return AddServiceResult(stack, name, written, violations)

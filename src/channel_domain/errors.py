"""Refusals the domain can give, each with a stable machine code.

The HTTP layer maps every `DomainError` to an RFC 9457 problem: the code is the contract
integration clients branch on, the message is for people. Codes never change once released.
"""

from __future__ import annotations

from typing import Any, ClassVar

_BY_CODE: dict[str, type[DomainError]] = {}


class DomainError(Exception):
    """A command was refused by a business rule; nothing was written."""

    code: ClassVar[str] = "rule_violated"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _BY_CODE.setdefault(cls.code, cls)

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class ValidationFailed(DomainError):
    code = "validation_error"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", field=field)
        self.field = field


class InvalidTransition(DomainError):
    code = "invalid_transition"

    @classmethod
    def of(cls, record: str, status: str, action: str) -> InvalidTransition:
        return cls(f"cannot {action} a {record} that is {status}", status=status, action=action)


class SegregationOfDuties(DomainError):
    code = "segregation_of_duties"


class RoleRequired(DomainError):
    code = "role_required"


class NotFound(DomainError):
    code = "not_found"


class VersionMismatch(DomainError):
    code = "version_mismatch"


class ConcurrentModification(DomainError):
    """Another command changed the record between our read and our write."""

    code = "concurrent_modification"


class SellerMoved(ConcurrentModification):
    """A partner or employee a command relied on closed selling days meanwhile: the command's
    own record did not move, so an If-Match on it still holds and the command runs again."""


class LedgerLagging(DomainError):
    """A command that reads a read model caught up to the log (a period close reads the
    commissions ledger) found it behind, or the log's head unsettled, for longer than it
    waits: nothing was written, and the command may be sent again shortly (503)."""

    code = "projection_lagging"


class IdempotencyKeyReused(DomainError):
    code = "idempotency_key_reused"


class CommandInFlight(DomainError):
    """The same idempotency key is being executed right now; retry after it finishes."""

    code = "idempotency_key_in_flight"


class MissingCommandContext(DomainError):
    code = "missing_command_context"


def refusal(code: str, message: str, **details: Any) -> DomainError:
    """A refusal by its code: the class that owns the code (`invalid_transition` is always an
    `InvalidTransition`), or one made for a rule-specific code such as `outside_territory`."""
    error_class = _BY_CODE.get(code)
    if error_class is None:
        error_class = type(
            "".join(part.title() for part in code.split("_")),
            (DomainError,),
            {"code": code, "__module__": __name__},
        )
    return error_class(message, **details)

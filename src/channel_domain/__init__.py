"""channel-domain: the sales-channel department as an event-sourced domain."""

from channel_domain.context import CommandContext, acting_as, current_command
from channel_domain.errors import DomainError

__all__ = ["CommandContext", "DomainError", "acting_as", "current_command"]

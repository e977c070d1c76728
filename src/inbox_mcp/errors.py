"""Typed errors with stable codes: the public contract of DESIGN.md §4.

    InboxError                     code            who can fix it
    ├── InvalidArgument            invalid_argument    the agent
    ├── NotFound                   not_found           the agent
    ├── PolicyDenied               policy_denied       the agent (or an operator's policy)
    ├── RateLimited                rate_limited        the agent, later
    ├── QuotaExceeded              quota_exceeded      the agent, later / an operator
    ├── AgentPaused                agent_paused        an operator
    ├── Conflict                   conflict            the agent
    ├── BackendUnavailable         backend_unavailable an operator
    └── Unauthenticated            unauthenticated     the caller

Every adapter renders an error the same way: ``"<code>: <sentence>"``. The MCP layer puts that
text first in a tool error, REST puts ``{"error": code, "message": sentence}`` in the body with
``http_status``, the CLI prints it and exits non-zero.

This module imports nothing heavy: the CLI and the service use it without loading the MCP SDK.
"""

from __future__ import annotations


class InboxError(Exception):
    code = "internal"
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message}


class InvalidArgument(InboxError):
    code = "invalid_argument"
    http_status = 400


class NotFound(InboxError):
    code = "not_found"
    http_status = 404


class PolicyDenied(InboxError):
    code = "policy_denied"
    http_status = 403


class RateLimited(InboxError):
    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class QuotaExceeded(InboxError):
    code = "quota_exceeded"
    http_status = 429


class AgentPaused(InboxError):
    code = "agent_paused"
    http_status = 423


class Conflict(InboxError):
    code = "conflict"
    http_status = 409


class BackendUnavailable(InboxError):
    code = "backend_unavailable"
    http_status = 503


class Unauthenticated(InboxError):
    code = "unauthenticated"
    http_status = 401


ALL_ERRORS: tuple[type[InboxError], ...] = (
    InvalidArgument,
    NotFound,
    PolicyDenied,
    RateLimited,
    QuotaExceeded,
    AgentPaused,
    Conflict,
    BackendUnavailable,
    Unauthenticated,
)

"""The decision: a pure function of (policy, request, counters). No I/O, no clock of its own, so
the same inputs always give the same answer and ``check_send`` can ask without consuming.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .loader import PolicyError
from .models import Policy, address_matches

Action = Literal["allow", "hold", "deny"]


@dataclass(frozen=True)
class SendRequest:
    agent: str
    verified: bool
    paused: bool
    recipients: list[str]  # to + cc + bcc, lower-case addresses
    size: int  # bytes of the composed message


@dataclass(frozen=True)
class Counters:
    """Messages this agent actually sent in each rolling window, and when the oldest of each
    window's sends ages out (seconds from now), to say when a retry can succeed."""

    last_minute: int = 0
    last_hour: int = 0
    last_day: int = 0
    minute_frees_in: float = 60.0
    hour_frees_in: float = 3600.0
    day_frees_in: float = 86400.0


@dataclass(frozen=True)
class Decision:
    action: Action
    rule: str
    reason: str
    code: str | None = None  # the error code a denial maps to (DESIGN.md §4)
    retry_after_s: float | None = None
    details: dict[str, str] = field(default_factory=dict)

    @property
    def allowed(self) -> bool:
        return self.action == "allow"


ALLOW = Decision("allow", "default", "no rule objects")


def _deny(rule: str, reason: str, code: str = "policy_denied", retry: float | None = None) -> Decision:
    return Decision("deny", rule, reason, code, retry)


def decide(policy: Policy | PolicyError, req: SendRequest, counters: Counters, source: str) -> Decision:
    """``source`` names the policy file(s) in reasons, so an operator knows what to edit."""
    if isinstance(policy, PolicyError):
        return _deny("policy.invalid", str(policy))
    if req.paused:
        return _deny("agent.paused", f"agent {req.agent} is paused; an operator must resume it", "agent_paused")
    if not req.recipients:
        return _deny("recipients.empty", "a message needs at least one recipient")
    caps = policy.caps
    if len(req.recipients) > caps.max_recipients:
        return _deny(
            "caps.max_recipients",
            f"{len(req.recipients)} recipients exceed caps.max_recipients = {caps.max_recipients} ({source})",
        )
    if req.size > caps.max_message_bytes:
        return _deny(
            "caps.max_message_bytes",
            f"message of {req.size} bytes exceeds caps.max_message_bytes = {caps.max_message_bytes} ({source})",
            "quota_exceeded",
        )
    for rcpt in req.recipients:
        hit = address_matches(rcpt, policy.recipients.block)
        if hit:
            return _deny("recipients.block", f"recipient {rcpt} matches recipients.block {hit!r} ({source})")
        if not address_matches(rcpt, policy.recipients.allow):
            return _deny("recipients.allow", f"recipient {rcpt} not in recipients.allow ({source})")
    tier_name = "verified" if req.verified else "unverified"
    tier = caps.verified if req.verified else caps.unverified
    windows = (
        ("per_minute", counters.last_minute, tier.per_minute, counters.minute_frees_in, "rate_limited"),
        ("per_hour", counters.last_hour, tier.per_hour, counters.hour_frees_in, "rate_limited"),
        ("per_day", counters.last_day, tier.per_day, counters.day_frees_in, "quota_exceeded"),
    )
    for name, used, limit, frees_in, code in windows:
        if used + 1 > limit:
            rule = f"caps.{tier_name}.{name}"
            return _deny(
                rule,
                f"{used} sends already in the window; {rule} = {limit} ({source}); retry in {frees_in:.0f} s",
                code,
                frees_in,
            )
    return ALLOW

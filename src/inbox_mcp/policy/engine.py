"""The decision: a pure function of (policy, request, counters). No I/O and no clock of its own,
so the same inputs always give the same answer, ``check_send`` can ask without consuming, and the
decision cost is measured without a database (bench/policy_gate.py).

Order matters and is part of the contract: hard denials first (broken policy, pause, size,
recipients, content, loops), then anomaly pauses, then caps and the new-recipient ramp — a send
that would be over a cap is refused outright rather than held — and holds for approval last.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .content import ContentFinding, describe
from .loader import PolicyError
from .models import Policy, Tier, address_matches

Action = Literal["allow", "hold", "deny"]


@dataclass(frozen=True)
class SendRequest:
    agent: str
    verified: bool
    paused: bool
    recipients: list[str]  # to + cc + bcc, lower-case addresses
    size: int  # bytes of the composed message
    new_recipients: list[str] = field(default_factory=list)  # never contacted by this agent
    external_new: list[str] = field(default_factory=list)  # of those, outside the local domain
    largest_attachment: int = 0
    findings: list[ContentFinding] = field(default_factory=list)
    answers_auto_submitted: bool = False
    duplicate_to: list[str] = field(default_factory=list)  # got this same body within the window
    approved: bool = False  # a human approved this exact message: holds no longer apply
    paused_reason: str | None = None


@dataclass(frozen=True)
class Window:
    used: int = 0
    frees_in: float = 0.0  # seconds until the oldest counted send leaves the window


@dataclass(frozen=True)
class Counters:
    """What this agent (and inbox) did in each rolling window, read from the database inside the
    send's write transaction."""

    minute: Window = Window()
    hour: Window = Window()
    day: Window = Window()
    inbox_minute: Window = Window()
    inbox_hour: Window = Window()
    inbox_day: Window = Window()
    new_hour: Window = Window()
    new_day: Window = Window()
    new_week: Window = Window()
    sends_10_minutes: int = 0
    sends_24h: int = 0
    bounces_24h: int = 0


@dataclass(frozen=True)
class Decision:
    action: Action
    rule: str
    reason: str
    code: str | None = None  # the error code a denial maps to (DESIGN.md §4)
    retry_after_s: float | None = None
    pause: bool = False  # an anomaly rule fired: the agent is to be paused

    @property
    def allowed(self) -> bool:
        return self.action == "allow"


ALLOW = Decision("allow", "default", "no rule objects")


def _deny(rule: str, reason: str, code: str = "policy_denied", retry: float | None = None, pause: bool = False) -> Decision:
    return Decision("deny", rule, reason, code, retry, pause)


def decide(policy: Policy | PolicyError, req: SendRequest, c: Counters, source: str) -> Decision:
    """``source`` names the policy file(s) in reasons, so an operator knows what to edit."""
    if isinstance(policy, PolicyError):
        return _deny("policy.invalid", str(policy))
    if req.paused:
        why = f" ({req.paused_reason})" if req.paused_reason else ""
        return _deny(
            "agent.paused", f"agent {req.agent} is paused{why}; an operator must resume it (inbox-mcp agents resume {req.agent})",
            "agent_paused",
        )
    return (
        _limits(policy, req, source)
        or _recipients(policy, req, source)
        or _content(req, source)
        or _loops(policy, req, source)
        or _anomaly(policy, req, c, source)
        or _caps(policy, req, c, source)
        or _ramp(policy, req, c, source)
        or (None if req.approved else _holds(policy, req, source))
        or ALLOW
    )


def _limits(p: Policy, req: SendRequest, source: str) -> Decision | None:
    if not req.recipients:
        return _deny("recipients.empty", "a message needs at least one recipient", "invalid_argument")
    if len(req.recipients) > p.caps.max_recipients:
        return _deny("caps.max_recipients", f"{len(req.recipients)} recipients exceed caps.max_recipients = {p.caps.max_recipients} ({source})")
    if req.size > p.caps.max_message_bytes:
        return _deny(
            "caps.max_message_bytes",
            f"message of {req.size} bytes exceeds caps.max_message_bytes = {p.caps.max_message_bytes} ({source})",
            "quota_exceeded",
        )
    return None


def _recipients(p: Policy, req: SendRequest, source: str) -> Decision | None:
    for rcpt in req.recipients:
        hit = address_matches(rcpt, p.recipients.block)
        if hit:
            return _deny("recipients.block", f"recipient {rcpt} matches recipients.block {hit!r} ({source})")
        if not address_matches(rcpt, p.recipients.allow):
            return _deny("recipients.allow", f"recipient {rcpt} not in recipients.allow ({source})")
    return None


def _content(req: SendRequest, source: str) -> Decision | None:
    for f in req.findings:
        if f.kind == "detector":
            return _deny(
                f"content.detectors.{f.name}",
                f"{describe(f)}: the message looks like it carries a secret (content.detectors, {source})",
            )
        if f.kind == "block_pattern":
            return _deny(f.name, f"{describe(f)} ({source})")
    return None


def _loops(p: Policy, req: SendRequest, source: str) -> Decision | None:
    if p.loops.refuse_reply_to_auto_submitted and req.answers_auto_submitted:
        return _deny(
            "loops.refuse_reply_to_auto_submitted",
            "the message answered is automatic (Auto-Submitted or Precedence: bulk/list) and "
            f"loops.refuse_reply_to_auto_submitted is on: a reply could start a mail loop ({source})",
        )
    if p.loops.duplicate_window_minutes and req.duplicate_to:
        return _deny(
            "loops.duplicate_window_minutes",
            f"the same message went to {', '.join(req.duplicate_to)} within "
            f"loops.duplicate_window_minutes = {p.loops.duplicate_window_minutes} ({source})",
        )
    return None


def _anomaly(p: Policy, req: SendRequest, c: Counters, source: str) -> Decision | None:
    a = p.anomaly
    why = None
    if c.sends_10_minutes + 1 > a.sends_per_10_minutes:
        why = ("anomaly.sends_per_10_minutes", f"{c.sends_10_minutes} sends in 10 minutes reach anomaly.sends_per_10_minutes = {a.sends_per_10_minutes}")
    elif req.new_recipients and c.new_hour.used + len(req.new_recipients) > a.new_recipients_per_hour:
        why = (
            "anomaly.new_recipients_per_hour",
            f"{c.new_hour.used + len(req.new_recipients)} new recipients in an hour exceed anomaly.new_recipients_per_hour = {a.new_recipients_per_hour}",
        )
    elif bounce_rate_exceeded(p, c.sends_24h, c.bounces_24h):
        why = (
            "anomaly.bounce_rate",
            f"{c.bounces_24h} bounces for {c.sends_24h} sends in 24 h exceed anomaly.bounce_rate = {a.bounce_rate}",
        )
    if why is None:
        return None
    rule, text = why
    return _deny(rule, f"agent {req.agent} paused automatically: {text} ({source}); an operator must resume it", "agent_paused", pause=True)


def bounce_rate_exceeded(p: Policy, sends: int, bounces: int) -> bool:
    a = p.anomaly
    return sends >= a.min_sends_for_bounce_rate and bounces / sends > a.bounce_rate


def _window(rule: str, w: Window, limit: int, code: str, source: str, unit: str = "sends") -> Decision | None:
    if w.used + 1 > limit:
        return _deny(
            rule,
            f"{w.used} {unit} already in the window; {rule} = {limit} ({source}); retry in {max(w.frees_in, 1):.0f} s",
            code,
            max(w.frees_in, 1.0),
        )
    return None


def _caps(p: Policy, req: SendRequest, c: Counters, source: str) -> Decision | None:
    tier_name = "verified" if req.verified else "unverified"
    tier: Tier = p.caps.verified if req.verified else p.caps.unverified
    inbox = p.caps.per_inbox
    return (
        _window(f"caps.{tier_name}.per_minute", c.minute, tier.per_minute, "rate_limited", source)
        or _window(f"caps.{tier_name}.per_hour", c.hour, tier.per_hour, "rate_limited", source)
        or _window(f"caps.{tier_name}.per_day", c.day, tier.per_day, "quota_exceeded", source)
        or _window("caps.per_inbox.per_minute", c.inbox_minute, inbox.per_minute, "rate_limited", source)
        or _window("caps.per_inbox.per_hour", c.inbox_hour, inbox.per_hour, "rate_limited", source)
        or _window("caps.per_inbox.per_day", c.inbox_day, inbox.per_day, "quota_exceeded", source)
    )


def _ramp(p: Policy, req: SendRequest, c: Counters, source: str) -> Decision | None:
    """The new-recipient ramp holds for unverified agents: a verified agent has earned trust,
    and the anomaly rule still watches it."""
    n = len(req.new_recipients)
    if req.verified or n == 0:
        return None
    r = p.recipients
    for rule, w, limit, code in (
        ("recipients.new_per_hour", c.new_hour, r.new_per_hour, "rate_limited"),
        ("recipients.new_per_day", c.new_day, r.new_per_day, "quota_exceeded"),
        ("recipients.new_per_week", c.new_week, r.new_per_week, "quota_exceeded"),
    ):
        if w.used + n > limit:
            return _deny(
                rule,
                f"{n} new recipient(s) on top of {w.used} already added exceed {rule} = {limit} ({source}); "
                f"retry in {max(w.frees_in, 1):.0f} s, or an operator can verify the agent",
                code,
                max(w.frees_in, 1.0),
            )
    return None


def _holds(p: Policy, req: SendRequest, source: str) -> Decision | None:
    for f in req.findings:
        if f.kind == "hold_pattern":
            return Decision("hold", f.name, f"{describe(f)}: held for a human to approve ({source})")
    if p.approval.hold_first_contact and req.external_new:
        return Decision(
            "hold", "approval.hold_first_contact",
            f"first message to {', '.join(req.external_new)}: held for a human to approve ({source})",
        )
    limit = p.approval.hold_attachments_over_bytes
    if limit and req.largest_attachment > limit:
        return Decision(
            "hold", "approval.hold_attachments_over_bytes",
            f"an attachment of {req.largest_attachment} bytes exceeds approval.hold_attachments_over_bytes = {limit} ({source})",
        )
    return None

"""The policy file format (DESIGN.md §5), as pydantic models. Unknown keys are errors: a typo in
a security setting must never silently mean "use the default"."""

from __future__ import annotations

import fnmatch
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_globs(values: list[str]) -> list[str]:
    for v in values:
        if not v or any(c.isspace() for c in v):
            raise ValueError(f"invalid address pattern {v!r}")
    return [v.lower() for v in values]


class Recipients(_Strict):
    allow: list[str] = ["*@{domain}"]
    block: list[str] = []
    new_per_hour: int = Field(3, ge=0)
    new_per_day: int = Field(5, ge=0)
    new_per_week: int = Field(10, ge=0)

    _globs = field_validator("allow", "block")(_check_globs)


class Tier(_Strict):
    per_minute: int = Field(ge=0)
    per_hour: int = Field(ge=0)
    per_day: int = Field(ge=0)


class Caps(_Strict):
    max_recipients: int = Field(10, ge=1)
    max_message_bytes: int = Field(10_485_760, ge=1024)
    max_inboxes: int = Field(3, ge=0)
    unverified: Tier = Tier(per_minute=5, per_hour=10, per_day=10)
    verified: Tier = Tier(per_minute=60, per_hour=1000, per_day=5000)
    # Sends from any one inbox, whichever the tier: stops one address from carrying all of a
    # verified agent's volume (an extension of DESIGN.md §5).
    per_inbox: Tier = Tier(per_minute=30, per_hour=500, per_day=2000)


DETECTORS = ("private_key", "aws_key", "github_token", "slack_token", "openai_key", "card_number")


class Content(_Strict):
    detectors: list[str] = list(DETECTORS)
    block_patterns: list[str] = []
    hold_patterns: list[str] = []

    @field_validator("detectors")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        for d in v:
            if d not in DETECTORS:
                raise ValueError(f"unknown detector {d!r} (known: {', '.join(DETECTORS)})")
        return v

    @field_validator("block_patterns", "hold_patterns")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        for p in v:
            try:
                re.compile(p)
            except re.error as e:
                raise ValueError(f"invalid regex {p!r}: {e}") from None
        return v


class Approval(_Strict):
    hold_first_contact: bool = True
    hold_attachments_over_bytes: int = Field(0, ge=0)
    expire_after_hours: float = Field(72, gt=0)


class Anomaly(_Strict):
    sends_per_10_minutes: int = Field(50, ge=1)
    new_recipients_per_hour: int = Field(20, ge=1)
    bounce_rate: float = Field(0.2, gt=0, le=1)
    min_sends_for_bounce_rate: int = Field(20, ge=1)


class Loops(_Strict):
    refuse_reply_to_auto_submitted: bool = True
    duplicate_window_minutes: int = Field(10, ge=0)


class Inbound(_Strict):
    allow_senders: list[str] = ["*"]
    block_senders: list[str] = []
    max_message_bytes: int = Field(26_214_400, ge=1024)

    _globs = field_validator("allow_senders", "block_senders")(_check_globs)


class Policy(_Strict):
    recipients: Recipients = Recipients()
    caps: Caps = Caps()
    content: Content = Content()
    approval: Approval = Approval()
    anomaly: Anomaly = Anomaly()
    loops: Loops = Loops()
    inbound: Inbound = Inbound()


def address_matches(address: str, patterns: list[str]) -> str | None:
    """The first glob that matches the address, or None. ``*@*.example.com`` matches subdomains
    only; list ``*@example.com`` too to include the apex."""
    address = address.lower()
    for p in patterns:
        if fnmatch.fnmatchcase(address, p):
            return p
    return None

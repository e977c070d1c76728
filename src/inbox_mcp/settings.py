"""Runtime settings, read from the environment (prefix ``INBOX_MCP_``) by pydantic-settings.

The names are a public contract (DESIGN.md §6): extend, never rename.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "inbox-mcp"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INBOX_MCP_", extra="ignore")

    home: Path = Field(default_factory=_default_home, description="data directory")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in the home")
    api_key: str | None = Field(default=None, description="the agent key a stdio server acts as")
    domain: str = "agents.localhost"
    policy_dir: Path | None = None
    backend: Literal["local", "smtp_imap"] = "local"
    smtp_listen: str = "127.0.0.1:2525"
    # Outbound relay for recipients outside the local domain (the embedded backend's smarthost,
    # and the submission server of the smtp_imap backend).
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_tls: Literal["none", "starttls", "implicit"] = "starttls"
    smtp_username: str | None = None
    smtp_password: str | None = None
    imap_host: str | None = None
    imap_port: int = 993
    imap_tls: Literal["none", "starttls", "implicit"] = "implicit"
    # One IMAP credential reads every inbox: a Dovecot master user. Each inbox logs in as
    # imap_login_format with {address} and {username} filled in.
    imap_username: str | None = None
    imap_password: str | None = None
    imap_login_format: str = "{address}*{username}"
    imap_poll_s: float = Field(default=30.0, description="sync interval where IDLE is unavailable")
    tls_verify: bool = Field(default=True, description="verify server certificates (off only for test servers)")
    # Provisioning on the smtp_imap backend: lines appended to Dovecot's passwd-file and to
    # Postfix's virtual mailbox map, then this command (e.g. "postfix reload").
    dovecot_users_file: Path | None = None
    postfix_recipients_file: Path | None = None
    provision_command: str | None = None
    attachments_dir: Path | None = Field(
        default=None, description="sends may attach files by path only from inside this directory"
    )
    dkim_key_dir: Path | None = Field(default=None, description="DKIM keys <domain>.<selector>.pem; default <home>/dkim")
    dkim_selector: str = "inbox"
    # How inbound SPF/DKIM/DMARC verdicts look up DNS: "system" (resolv.conf), "off", or the path
    # of a JSON file {"name": ["txt", …]} — a static resolver for air-gapped sites and tests.
    auth_dns: str = "system"
    http_host: str = "127.0.0.1"
    http_port: int = 8025

    @field_validator("domain")
    @classmethod
    def _lower_domain(cls, v: str) -> str:
        v = v.strip().lower()
        if not v or "@" in v or any(c.isspace() for c in v):
            raise ValueError(f"INBOX_MCP_DOMAIN is not a domain: {v!r}")
        return v

    @cached_property
    def url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'inbox.db'}"

    @cached_property
    def policies(self) -> Path:
        return self.policy_dir or self.home / "policies"

    @cached_property
    def attachments_root(self) -> Path:
        return self.attachments_dir or self.home / "attachments"

    @cached_property
    def dkim_keys(self) -> Path:
        return self.dkim_key_dir or self.home / "dkim"

    @cached_property
    def smtp_listen_addr(self) -> tuple[str, int]:
        host, _, port = self.smtp_listen.rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(port)

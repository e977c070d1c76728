"""Resolving the three forms an outgoing attachment can take (inline base64, a file by path in
the attachments directory, an attachment of a message the agent can read) into bytes."""

from __future__ import annotations

import base64
import binascii
import mimetypes
from pathlib import Path

from sqlmodel import Session

from ..contract import AttachmentIn
from ..errors import InvalidArgument, NotFound, QuotaExceeded
from ..mail.compose import OutgoingAttachment, check_header_value
from ..policy.loader import PolicyError
from ..policy.models import Caps
from ..store.blobs import get_blob
from ..store.tables import Attachment
from .base import AgentRef, ServiceBase


def _guess_type(filename: str) -> str:
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


class AttachmentResolver(ServiceBase):
    def attachment_limit(self, agent: AgentRef) -> int:
        """caps.max_message_bytes for this agent. A broken policy is reported by the gate
        (policy_denied naming the file), so here it falls back to the shipped default."""
        policy = self.policies.effective(agent.tenant, agent.name)
        return policy.caps.max_message_bytes if not isinstance(policy, PolicyError) else Caps().max_message_bytes

    def resolve_attachments(
        self, s: Session, agent: AgentRef, specs: list[AttachmentIn], max_bytes: int
    ) -> list[OutgoingAttachment]:
        out: list[OutgoingAttachment] = []
        total = 0
        for i, spec in enumerate(specs):
            att = self._resolve_one(s, agent, spec, f"attachments[{i}]")
            total += len(att.data)
            if total > max_bytes:
                raise QuotaExceeded(f"attachments total more than caps.max_message_bytes = {max_bytes} bytes")
            out.append(att)
        return out

    def _resolve_one(self, s: Session, agent: AgentRef, spec: AttachmentIn, where: str) -> OutgoingAttachment:
        forms = [spec.content_base64 is not None, spec.path is not None, spec.message_id is not None or spec.attachment_id is not None]
        if sum(forms) != 1:
            raise InvalidArgument(f"{where} needs exactly one of content_base64, path, or message_id + attachment_id")
        if spec.content_base64 is not None:
            if not spec.filename:
                raise InvalidArgument(f"{where}.filename is required with content_base64")
            try:
                data = base64.b64decode(spec.content_base64, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidArgument(f"{where}.content_base64 is not valid base64") from None
            name = spec.filename
        elif spec.path is not None:
            data, name = self._read_path(spec.path, where)
            name = spec.filename or name
        else:
            if not spec.message_id or not spec.attachment_id:
                raise InvalidArgument(f"{where} needs both message_id and attachment_id")
            msg, _ = self._message(s, agent, spec.message_id)
            row = s.get(Attachment, spec.attachment_id)
            if row is None or row.message_pk != msg.pk:
                raise NotFound(f"attachment {spec.attachment_id!r} does not exist on message {spec.message_id!r}")
            data = get_blob(s, row.sha256)
            name = spec.filename or row.filename
            if spec.content_type is None:
                spec = spec.model_copy(update={"content_type": row.content_type})
        check_header_value(name, f"{where}.filename")
        ctype = spec.content_type or _guess_type(name)
        return OutgoingAttachment(filename=name, content_type=ctype, data=data)

    def _read_path(self, path: str, where: str) -> tuple[bytes, str]:
        root = self.settings.attachments_root.resolve()
        target = (root / path).resolve()
        # resolve() follows symlinks, so a link pointing out of the directory is caught too.
        if not target.is_relative_to(root):
            raise InvalidArgument(f"{where}.path {path!r} is outside the attachments directory {root}")
        if not target.is_file():
            raise NotFound(f"{where}.path {path!r} is not a file in the attachments directory {root}")
        return target.read_bytes(), Path(target).name

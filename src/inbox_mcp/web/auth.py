"""Bearer-key authentication for the HTTP transport: a request without a valid agent key never
reaches the MCP layer; it gets 401 with a JSON body carrying the stable error code."""

from __future__ import annotations

import json
from typing import Any

import anyio
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import Unauthenticated


class BearerGate:
    def __init__(self, app: ASGIApp, service: Any) -> None:  # noqa: ANN401
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        scheme, _, key = headers.get("authorization", "").partition(" ")
        try:
            if scheme.lower() != "bearer" or not key.strip():
                raise Unauthenticated("send Authorization: Bearer <agent key>")
            await anyio.to_thread.run_sync(self.service.authenticate, key.strip())
        except Unauthenticated as e:
            body = json.dumps(e.as_dict()).encode()
            await send({
                "type": "http.response.start", "status": 401,
                "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b'Bearer realm="inbox-mcp"'),
                            (b"content-length", str(len(body)).encode())],
            })
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)

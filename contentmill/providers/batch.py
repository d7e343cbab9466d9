"""OpenAI's Batch API for one chat model: upload a JSONL file of requests, create a batch, read its results.

Batch work is billed at the vendor's batch discount and answered within a 24 h window; it suits runs that can
wait. This module only talks HTTP: pricing, admission and the ledger are the gateway's (``gateway/batch.py``).
It uses the text model's own client (base URL, key, transport) and request body, so a batch line asks exactly
what the online call would.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from contentmill.errors import BadRequest, MalformedResponse, ProviderError, ProviderUnavailable
from contentmill.metering import Usage
from contentmill.providers.base import TextResult
from contentmill.providers.openai_client import STATUS_ERRORS, error_message, reported_usage, unusable
from contentmill.providers.openai_compat import OpenAICompatTextModel
from contentmill.requests import TextRequest

ENDPOINT = "/v1/chat/completions"
COMPLETION_WINDOW = "24h"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclass(frozen=True, slots=True)
class BatchStatus:
    """What the vendor says about a batch."""

    id: str
    status: str
    total: int = 0
    completed: int = 0
    failed: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: tuple[str, ...] = ()

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def from_body(cls, data: Mapping[str, Any]) -> BatchStatus:
        counts = data.get("request_counts") or {}
        raw_errors = (data.get("errors") or {}).get("data") or []
        errors = tuple(
            f"line {e.get('line')}: {e.get('message')}" if e.get("line") else str(e.get("message"))
            for e in raw_errors if isinstance(e, dict)
        )
        return cls(str(data["id"]), str(data["status"]), int(counts.get("total") or 0),
                   int(counts.get("completed") or 0), int(counts.get("failed") or 0),
                   data.get("output_file_id"), data.get("error_file_id"), errors)


@dataclass(frozen=True, slots=True)
class BatchAnswer:
    """One request's answer from a finished batch: a result, or the error the vendor gave it."""

    custom_id: str
    result: TextResult | None = None
    error: ProviderError | None = None


@dataclass(slots=True)
class BatchClient:
    """The Batch API of the provider behind ``model`` (an OpenAI-compatible text model)."""

    model: OpenAICompatTextModel

    @property
    def provider(self) -> str:
        return self.model.client.provider

    def _url(self, path: str) -> httpx.URL:
        return httpx.URL(self.model.client.base_url + path)

    def _headers(self, content_type: str | None) -> httpx.Headers:
        headers = httpx.Headers(self.model.client._headers)  # base URL and key stay the client's own
        del headers["content-type"]
        if content_type:
            headers["content-type"] = content_type
        return headers

    async def _call(self, method: str, path: str, *, json_body: Any = None,
                    multipart: tuple[Mapping[str, str], Mapping[str, tuple[str, bytes, str]]] | None = None
                    ) -> httpx.Response:
        client = self.model.client
        if multipart is not None:
            request = httpx.Request(method, self._url(path), data=multipart[0], files=multipart[1],
                                    headers=self._headers(None))
            request.read()  # the multipart body in one piece, for any transport
            request.headers.update({"content-length": str(len(request.content))})
        else:
            content = orjson.dumps(json_body) if json_body is not None else None
            request = httpx.Request(method, self._url(path), content=content,
                                    headers=self._headers("application/json" if content else None))
        request.extensions["timeout"] = httpx.Timeout(client._timeout).as_dict()
        try:
            response = await client._send(request)
            await response.aread()
        except httpx.HTTPError as exc:
            raise client._transport_error(exc, self.model.name) from exc
        if response.status_code >= 400:
            raise client._error(response, response.content, self.model.name)
        return response

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            data = orjson.loads(response.content)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise MalformedResponse("the Batch API answer is not a JSON object", provider=self.provider,
                                    model=self.model.name, request_id=response.headers.get("x-request-id"))
        return data

    def lines(self, requests: Mapping[str, TextRequest]) -> bytes:
        """The JSONL input file: one POST to the chat endpoint per custom id, with the online call's body."""
        return b"".join(
            orjson.dumps({"custom_id": custom_id, "method": "POST", "url": ENDPOINT,
                          "body": self.model._payload(request, False)}) + b"\n"
            for custom_id, request in requests.items()
        )

    async def submit(self, requests: Mapping[str, TextRequest], metadata: Mapping[str, str] | None = None
                     ) -> BatchStatus:
        """Upload the requests (keyed by custom id) and create the batch; returns it as created."""
        if not requests:
            raise ValueError("a batch needs at least one request")
        name = f"contentmill-{uuid.uuid4().hex[:12]}.jsonl"
        upload = await self._call("POST", "/files", multipart=(
            {"purpose": "batch"}, {"file": (name, self.lines(requests), "application/jsonl")}))
        file_id = self._json(upload).get("id")
        if not isinstance(file_id, str):
            raise MalformedResponse("the file upload answer has no id", provider=self.provider, model=self.model.name)
        body: dict[str, Any] = {"input_file_id": file_id, "endpoint": ENDPOINT, "completion_window": COMPLETION_WINDOW}
        if metadata:
            body["metadata"] = dict(metadata)
        return self._status(await self._call("POST", "/batches", json_body=body))

    def _status(self, response: httpx.Response) -> BatchStatus:
        try:
            return BatchStatus.from_body(self._json(response))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise MalformedResponse("the batch answer has no id or status", provider=self.provider,
                                    model=self.model.name) from None

    async def status(self, batch_id: str) -> BatchStatus:
        return self._status(await self._call("GET", f"/batches/{batch_id}"))

    async def cancel(self, batch_id: str) -> BatchStatus:
        return self._status(await self._call("POST", f"/batches/{batch_id}/cancel"))

    async def answers(self, status: BatchStatus) -> dict[str, BatchAnswer]:
        """Every answer of a finished batch by custom id, from its output and error files."""
        if not status.done:
            raise ValueError(f"batch {status.id} is {status.status}, not finished")
        found: dict[str, BatchAnswer] = {}
        for file_id in (status.output_file_id, status.error_file_id):
            if file_id:
                content = (await self._call("GET", f"/files/{file_id}/content")).content
                for raw in content.splitlines():
                    if raw.strip():
                        answer = self._answer(raw)
                        found[answer.custom_id] = answer
        return found

    def _answer(self, raw: bytes) -> BatchAnswer:
        try:
            line = orjson.loads(raw)
            custom_id = str(line["custom_id"])
            response = line.get("response") or {}
            status = int(response.get("status_code") or 0)
            body = response.get("body") or {}
            request_id = response.get("request_id")
        except (ValueError, KeyError, TypeError, AttributeError):
            raise MalformedResponse("a batch output line cannot be read", provider=self.provider,
                                    model=self.model.name) from None
        if status != 200 or line.get("error"):
            error = line.get("error") or body
            cls = STATUS_ERRORS.get(status, ProviderUnavailable if status >= 500 else BadRequest)
            message = error_message(orjson.dumps(error)) if error else f"HTTP {status}"
            return BatchAnswer(custom_id, error=cls(message, provider=self.provider, model=self.model.name,
                                                    status=status or None, request_id=request_id))
        reported = reported_usage(body.get("usage")) if isinstance(body, dict) else None
        try:
            choice = body["choices"][0]
            text = choice["message"].get("content") or ""
            finish = choice.get("finish_reason") or "stop"
        except (KeyError, IndexError, TypeError, AttributeError):
            return BatchAnswer(custom_id, error=unusable(
                "it has no choices[0].message", reported, self.provider, self.model.name, request_id))
        if reported is None:
            return BatchAnswer(custom_id, error=MalformedResponse(
                "a batch answer reports no usage, so it cannot be billed", provider=self.provider,
                model=self.model.name, request_id=request_id))
        usage = reported.usage or Usage(estimated=True)  # unreadable counts: the gateway bills the item's estimate
        return BatchAnswer(custom_id, TextResult(text, self.model.name, usage, finish, request_id or body.get("id"),
                                                 0.0, reported))


def as_requests(items: Sequence[tuple[str, TextRequest]]) -> dict[str, TextRequest]:
    """Requests keyed by custom id; a custom id given twice is refused (the vendor would fail the batch)."""
    out: dict[str, TextRequest] = {}
    for custom_id, request in items:
        if not custom_id or custom_id in out:
            raise ValueError(f"custom ids must be non-empty and unique (got {custom_id!r} twice or empty)")
        out[custom_id] = request
    return out

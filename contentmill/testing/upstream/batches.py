"""The fake upstream's Batch API, as OpenAI serves it: ``/v1/files`` and ``/v1/batches``.

A batch is a JSONL file of requests (``custom_id``, ``method``, ``url``, ``body``) uploaded with
``purpose=batch``, then ``POST /v1/batches`` with its ``input_file_id``, ``endpoint=/v1/chat/completions`` and
``completion_window=24h``. The batch goes ``validating`` -> ``in_progress`` -> ``completed`` (after
``--batch-delay-ms``), or ``failed`` when the file is invalid, or ``cancelling`` -> ``cancelled``. Each output line
carries the ``custom_id`` and the same chat completion body, usage included, that the online endpoint gives;
requests that fail go to the error file. Batch work does not use the key's RPM/TPM (OpenAI counts it apart), and
``/stats`` counts it under ``batch``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web

from contentmill.testing.upstream.chat import completion_body, parse_chat
from contentmill.testing.upstream.common import Exchange, Wrap, dumps, json_body, required_str
from contentmill.testing.upstream.errors import ApiError, bad_request
from contentmill.testing.upstream.service import Service

BATCH_ENDPOINTS = ("/v1/chat/completions",)
COMPLETION_WINDOW = "24h"
WINDOW_S = 24 * 3600
MAX_FILE_BYTES = 200 * 1024 * 1024  # OpenAI's limit on a batch input file
MAX_REQUESTS = 50_000  # OpenAI's limit on requests per batch
VALIDATING_S = 0.02  # how long a batch shows "validating" before it runs


def _new_id(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


@dataclass(slots=True)
class StoredFile:
    id: str
    purpose: str
    filename: str
    data: bytes
    created_at: int = field(default_factory=lambda: int(time.time()))

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": len(self.data), "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed",
                "status_details": None}


@dataclass(slots=True)
class Batch:
    id: str
    input_file_id: str
    endpoint: str
    metadata: dict[str, str] | None
    owner: str  # the key that created it: another key cannot see it
    status: str = "validating"
    created_at: int = field(default_factory=lambda: int(time.time()))
    total: int = 0
    completed: int = 0
    failed: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[dict[str, Any]] | None = None
    stamps: dict[str, int] = field(default_factory=dict)
    runner: asyncio.Task[None] | None = None

    def mark(self, status: str) -> None:
        self.status = status
        self.stamps[status] = int(time.time())

    def as_dict(self) -> dict[str, Any]:
        stamp = self.stamps.get
        return {
            "id": self.id, "object": "batch", "endpoint": self.endpoint,
            "errors": None if self.errors is None else {"object": "list", "data": self.errors},
            "input_file_id": self.input_file_id, "completion_window": COMPLETION_WINDOW, "status": self.status,
            "output_file_id": self.output_file_id, "error_file_id": self.error_file_id,
            "created_at": self.created_at, "in_progress_at": stamp("in_progress"),
            "expires_at": self.created_at + WINDOW_S, "finalizing_at": stamp("finalizing"),
            "completed_at": stamp("completed"), "failed_at": stamp("failed"), "expired_at": None,
            "cancelling_at": stamp("cancelling"), "cancelled_at": stamp("cancelled"),
            "request_counts": {"total": self.total, "completed": self.completed, "failed": self.failed},
            "metadata": self.metadata,
        }


class BatchApi:
    """Files and batches of one fake upstream; answers go through the server's endpoint wrapper and auth."""

    def __init__(self, service: Service, delay_s: float) -> None:
        self.service = service
        self.delay_s = delay_s
        self.files: dict[str, StoredFile] = {}
        self.batches: dict[str, Batch] = {}

    def routes(self, app: web.Application, wrap: Wrap) -> None:
        app.router.add_post("/v1/files", wrap(self._upload))
        app.router.add_get("/v1/files/{id}", wrap(self._file))
        app.router.add_get("/v1/files/{id}/content", wrap(self._content))
        app.router.add_post("/v1/batches", wrap(self._create))
        app.router.add_get("/v1/batches/{id}", wrap(self._get))
        app.router.add_post("/v1/batches/{id}/cancel", wrap(self._cancel))
        app.on_cleanup.append(self._stop_runners)

    async def _stop_runners(self, app: web.Application) -> None:
        for batch in self.batches.values():
            if batch.runner is not None and not batch.runner.done():
                batch.runner.cancel()

    # -- files --------------------------------------------------------------------------------------------------

    async def _upload(self, exchange: Exchange) -> web.StreamResponse:
        self.service.authenticate(exchange)
        if not exchange.request.content_type.startswith("multipart/"):
            raise bad_request("Upload a file as multipart/form-data with fields 'purpose' and 'file'.", "file")
        purpose, filename, data = None, "upload.jsonl", None
        reader = await exchange.request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "purpose":
                purpose = (await part.text()).strip()
            elif part.name == "file":
                filename = part.filename or filename
                data = bytes(await part.read())
        if data is None:
            raise bad_request("Missing required parameter: 'file'.", "file", "missing_required_parameter")
        if purpose != "batch":
            raise bad_request(f"Invalid 'purpose': this upstream stores 'batch' files (got {purpose!r}).",
                               "purpose")
        if len(data) > MAX_FILE_BYTES:
            raise bad_request(f"File too large: at most {MAX_FILE_BYTES} bytes.", "file")
        stored = StoredFile(_new_id("file-"), purpose, filename, data)
        self.files[stored.id] = stored
        return web.json_response(stored.as_dict())

    def _stored(self, exchange: Exchange) -> StoredFile:
        self.service.authenticate(exchange)
        file_id = exchange.request.match_info["id"]
        found = self.files.get(file_id)
        if found is None:
            raise ApiError(404, f"No such File object: {file_id}", param="id", code=None)
        return found

    async def _file(self, exchange: Exchange) -> web.StreamResponse:
        return web.json_response(self._stored(exchange).as_dict())

    async def _content(self, exchange: Exchange) -> web.StreamResponse:
        return web.Response(body=self._stored(exchange).data, content_type="application/jsonl")

    # -- batches ------------------------------------------------------------------------------------------------

    async def _create(self, exchange: Exchange) -> web.StreamResponse:
        key = self.service.authenticate(exchange)
        body = await json_body(exchange.request)
        file_id = required_str(body, "input_file_id")
        endpoint = required_str(body, "endpoint")
        window = required_str(body, "completion_window")
        if endpoint not in BATCH_ENDPOINTS:
            raise bad_request(f"Invalid 'endpoint': expected one of {', '.join(BATCH_ENDPOINTS)}.", "endpoint")
        if window != COMPLETION_WINDOW:
            raise bad_request(f"Invalid 'completion_window': expected '{COMPLETION_WINDOW}'.", "completion_window")
        stored = self.files.get(file_id)
        if stored is None or stored.purpose != "batch":
            raise bad_request(f"Invalid 'input_file_id': no batch file {file_id}.", "input_file_id")
        metadata = body.get("metadata")
        if metadata is not None and not (isinstance(metadata, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
            raise bad_request("Invalid 'metadata': expected an object of strings.", "metadata")
        batch = Batch(_new_id("batch_"), file_id, endpoint, metadata, key)
        self.batches[batch.id] = batch
        self.service.stats.batch.batches += 1
        batch.runner = asyncio.get_running_loop().create_task(self._run(batch, stored.data))
        return web.json_response(batch.as_dict())

    def _owned(self, exchange: Exchange) -> Batch:
        key = self.service.authenticate(exchange)
        batch_id = exchange.request.match_info["id"]
        batch = self.batches.get(batch_id)
        if batch is None or batch.owner != key:
            raise ApiError(404, f"No batch found with id '{batch_id}'.", param="id", code=None)
        return batch

    async def _get(self, exchange: Exchange) -> web.StreamResponse:
        return web.json_response(self._owned(exchange).as_dict())

    async def _cancel(self, exchange: Exchange) -> web.StreamResponse:
        batch = self._owned(exchange)
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            raise ApiError(409, f"Cannot cancel a batch with status '{batch.status}'.", code=None)
        if batch.status != "cancelling":
            batch.mark("cancelling")
            if batch.runner is not None:
                batch.runner.cancel()
            batch.mark("cancelled")
        return web.json_response(batch.as_dict())

    async def _run(self, batch: Batch, data: bytes) -> None:
        """Validate the file, then answer every line after the configured delay."""
        await asyncio.sleep(VALIDATING_S)
        lines, errors = _read_lines(data, batch.endpoint)
        if errors:
            batch.errors = errors
            batch.mark("failed")
            return
        batch.total = len(lines)
        batch.mark("in_progress")
        await asyncio.sleep(self.delay_s)
        batch.mark("finalizing")
        outputs: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        for line in lines:
            row, ok = self._answer(batch.owner, line)
            (outputs if ok else failures).append(row)
        batch.completed, batch.failed = len(outputs), len(failures)
        batch.output_file_id = self._keep(outputs, f"{batch.id}_output.jsonl") if outputs else None
        batch.error_file_id = self._keep(failures, f"{batch.id}_error.jsonl") if failures else None
        batch.mark("completed")

    def _keep(self, rows: list[dict[str, Any]], filename: str) -> str:
        data = "".join(dumps(row) + "\n" for row in rows).encode()
        stored = StoredFile(_new_id("file-"), "batch_output", filename, data)
        self.files[stored.id] = stored
        return stored.id

    def _answer(self, key: str, line: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        request_id = "req_" + os.urandom(16).hex()
        row: dict[str, Any] = {"id": _new_id("batch_req_"), "custom_id": line["custom_id"], "error": None}
        try:
            call = parse_chat(line["body"])
            if call.stream:
                raise ApiError(400, "Invalid 'stream': batch requests cannot be streamed.", param="stream")
        except ApiError as error:
            row["response"] = {"status_code": error.status, "request_id": request_id, "body": error.body()}
            self.service.stats.batch.failed += 1
            return row, False
        answer = call.answer(call.prompt_tokens())
        row["response"] = {"status_code": 200, "request_id": request_id, "body": completion_body(call, answer)}
        counters = self.service.stats.batch
        counters.requests += 1
        counters.input_tokens += answer.prompt_tokens
        counters.output_tokens += answer.completion_tokens
        return row, True


def _read_lines(data: bytes, endpoint: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The file's requests, or the errors that fail the batch (as OpenAI lists them, by line)."""
    lines: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    models: set[str] = set()

    def error(number: int, code: str, message: str, param: str | None = None) -> None:
        errors.append({"code": code, "message": message, "param": param, "line": number})

    for number, raw in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            error(number, "invalid_json_line", "This line is not parseable as valid JSON.")
            continue
        if not isinstance(line, dict):
            error(number, "invalid_json_line", "Each line must be a JSON object.")
            continue
        custom_id = line.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            error(number, "missing_required_parameter", "Missing required parameter: 'custom_id'.", "custom_id")
            continue
        if custom_id in seen:
            error(number, "duplicate_custom_id", f"The custom_id '{custom_id}' is used more than once.",
                  "custom_id")
            continue
        seen.add(custom_id)
        if line.get("method") != "POST" or line.get("url") != endpoint:
            error(number, "invalid_url", f"Each line must be a POST to the batch's endpoint {endpoint}.", "url")
            continue
        body = line.get("body")
        if not isinstance(body, dict):
            error(number, "invalid_request", "Missing request 'body' object.", "body")
            continue
        if isinstance(body.get("model"), str):
            models.add(body["model"])
        lines.append(line)
    if len(models) > 1:
        error(0, "mismatched_model", f"A batch file may use one model only (found {', '.join(sorted(models))}).",
              "body.model")
    if not lines and not errors:
        error(0, "empty_file", "The input file holds no requests.")
    if len(lines) > MAX_REQUESTS:
        error(0, "too_many_requests", f"A batch may hold at most {MAX_REQUESTS} requests.")
    return lines, errors

"""The Batch API on the server: ``POST /v1/files``, ``GET /v1/files/{id}[/content]``, ``POST /v1/batches``,
``GET /v1/batches/{id}`` and ``POST /v1/batches/{id}/cancel``, as OpenAI's SDKs call them.

A client uploads a JSONL file of chat requests (``purpose=batch``) and creates a batch of it. Every line is checked
at creation as ``/v1/chat/completions`` checks a body (a bad line is a 400 naming its line number, before anything
is reserved), all lines name one model the key may use, and the batch goes through ``Gateway.submit_batch``: the
cache answers what it holds, the rest is priced at the vendor's batch discount and reserved against the key's and
its team's budgets at once, then submitted to the vendor as one batch. A later ``GET`` of the batch collects it
when the vendor has finished (``Gateway.collect_batch``: settled and written to the ledger per line, answers
cached) and writes the output and error files in OpenAI's shape.

Files and batches live in the object store (the data directory, or S3 in the services profile), so every replica
sees them; they belong to the key's team, and any other key is answered 404. What one replica collects it saves at
once (a *part* per vendor batch), and a replica that finds a vendor batch collected elsewhere reads that part.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from contentmill.errors import ContentmillError
from contentmill.gateway import Generation
from contentmill.gateway.batch import BatchOutcome
from contentmill.ids import new_id
from contentmill.providers.batch import ENDPOINT
from contentmill.server.batch_files import parse_lines, parse_upload
from contentmill.server.errors import ApiError
from contentmill.server.http import Answer, Request, json_answer
from contentmill.server.keys import VirtualKey
from contentmill.server.protocol import BadBody, completion_body, parse_json
from contentmill.storage import ObjectStore, open_store

if TYPE_CHECKING:
    from contentmill.server.app import Server

COMPLETION_WINDOW = "24h"
WINDOW_S = 24 * 3600
FILES = "server/files/"
BATCHES = "server/batches/"
VENDOR = "server/vendor-batches/"
BATCH_TAG = "batch"
VANISHED_GRACE_S = 120.0  # how long a vendor batch collected by another replica may go without its saved part
log = logging.getLogger("contentmill.server.batches")


# -- records ----------------------------------------------------------------------------------------------------


def _file_body(meta: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": meta["id"], "object": "file", "bytes": meta["bytes"], "created_at": meta["created_at"],
            "filename": meta["filename"], "purpose": meta["purpose"], "status": "processed", "expires_at": None,
            "status_details": None}


def _line_id(batch_id: str, custom_id: str) -> str:
    return "batch_req_" + hashlib.sha256(f"{batch_id}\x1f{custom_id}".encode()).hexdigest()[:24]


def _answer(gen: Generation) -> dict[str, Any]:
    """One output line's ``response``, as OpenAI's batch output carries it, with what the line cost."""
    body = completion_body(gen, "chatcmpl-" + new_id()[:24])
    return {"status_code": 200, "request_id": gen.request_id or "", "body": body, "cost_usd": gen.cost_usd,
            "cached": gen.cached}


def _failure(message: str, code: str = "upstream_error") -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _part(outcome: BatchOutcome) -> dict[str, Any]:
    """What collecting one vendor batch gave, by custom id, saved for whichever batch of this server owns it."""
    results: dict[str, Any] = {}
    for custom_id, result in outcome.results.items():
        if result.generation is not None:
            results[custom_id] = {"response": _answer(result.generation)}
        else:
            results[custom_id] = _failure(result.error or "no answer")
    return {"vendor_status": outcome.status, "cost_usd": outcome.cost_usd, "results": results}


class Batches:
    """The Batch API routes of one server process; records are in the object store, shared by the replicas."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self._store: ObjectStore | None = None

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            self._store = open_store(self.server.settings)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    async def _get(self, key: str) -> Any | None:
        return await asyncio.to_thread(self.store.get_json, key)

    async def _put(self, key: str, value: Any) -> None:
        await asyncio.to_thread(self.store.put_json, key, value)

    async def _key(self, request: Request) -> VirtualKey:
        return self.server.calling(await self.server.authenticate(request))

    @staticmethod
    def _owned(record: Any, key: VirtualKey, what: str, ident: str) -> dict[str, Any]:
        """The record if the key's team owns it; anything else is the same 404, so ids reveal nothing."""
        if not isinstance(record, dict) or record.get("team") != key.team:
            raise ApiError(404, f"no {what} {ident!r} for this key's team", "invalid_request_error", "not_found",
                           "id")
        return record

    @staticmethod
    def _ident(raw: str, prefix: str) -> str:
        if not raw.startswith(prefix) or not raw[len(prefix):].isalnum():
            raise ApiError(404, f"{raw!r} is not an id this server gave", "invalid_request_error", "not_found", "id")
        return raw

    async def route(self, request: Request) -> Answer:
        """``/v1/files/{id}[/content]`` and ``/v1/batches/{id}[/cancel]``."""
        method, path = request.scope["method"], request.scope["path"]
        collection, _, rest = path[len("/v1/"):].partition("/")
        ident, _, action = rest.partition("/")
        if collection == "files" and method == "GET" and action in ("", "content"):
            return await self.file(request, self._ident(ident, "file-"), action == "content")
        if collection == "batches" and method == "GET" and not action:
            return await self.batch(request, self._ident(ident, "batch_"))
        if collection == "batches" and method == "POST" and action == "cancel":
            return await self.batch(request, self._ident(ident, "batch_"), cancel=True)
        raise ApiError(404, f"{method} {path} is not a route of this server (docs/server.md lists them)",
                       "invalid_request_error", "not_found")

    # -- files ------------------------------------------------------------------------------------------------

    async def upload(self, request: Request) -> Answer:
        key = await self._key(request)
        upload = parse_upload(request.header(b"content-type"),
                              await request.body(self.server.settings.server_max_file_bytes))
        parse_lines(upload.data, self.server.settings.server_default_max_tokens)  # refused now, not at creation
        return json_answer(200, _file_body(await self._keep(key, upload.data, upload.filename, upload.purpose)))

    async def _keep(self, key: VirtualKey, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
        """Store a file of the key's team: its bytes, then its metadata (whose presence means the file is whole)."""
        meta = {"id": "file-" + new_id()[:24], "bytes": len(data), "created_at": int(time.time()),
                "filename": filename, "purpose": purpose, "team": key.team, "key_id": key.id}
        await asyncio.to_thread(self.store.put, f"{FILES}{meta['id']}.jsonl", data, "application/jsonl")
        await self._put(f"{FILES}{meta['id']}.json", meta)
        return meta

    async def _content(self, file_id: str) -> bytes | None:
        return await asyncio.to_thread(self.store.get, f"{FILES}{file_id}.jsonl")

    async def _file(self, key: VirtualKey, file_id: str) -> dict[str, Any]:
        return self._owned(await self._get(f"{FILES}{file_id}.json"), key, "file", file_id)

    async def file(self, request: Request, file_id: str, content: bool) -> Answer:
        meta = await self._file(await self._key(request), file_id)
        if not content:
            return json_answer(200, _file_body(meta))
        data = await self._content(file_id)
        if data is None:
            raise ApiError(404, f"the content of {file_id} is gone from the store", "invalid_request_error",
                           "not_found", "id")
        return Answer(200, data, b"application/jsonl")

    async def _write_file(self, key: VirtualKey, lines: list[dict[str, Any]], name: str) -> str:
        data = b"".join(orjson.dumps(line) + b"\n" for line in lines)
        return str((await self._keep(key, data, name, "batch_output"))["id"])

    # -- batches ----------------------------------------------------------------------------------------------

    async def create(self, request: Request) -> Answer:
        key = await self._key(request)
        body = parse_json(await request.body())
        endpoint = body.get("endpoint")
        if endpoint != ENDPOINT:
            raise BadBody(f"'endpoint' must be {ENDPOINT} (got {endpoint!r}): batches of chat completions only",
                          "endpoint")
        if body.get("completion_window", COMPLETION_WINDOW) != COMPLETION_WINDOW:
            raise BadBody(f"'completion_window' must be {COMPLETION_WINDOW!r}", "completion_window")
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise BadBody("'metadata' must be an object of strings", "metadata")
        file_id = body.get("input_file_id")
        if not isinstance(file_id, str):
            raise BadBody("'input_file_id' is required: the id POST /v1/files gave", "input_file_id")
        await self._file(key, self._ident(file_id, "file-"))
        data = await self._content(file_id) or b""
        lines = parse_lines(data, self.server.settings.server_default_max_tokens)
        models = {asked for _, asked, _ in lines}
        if len(models) != 1:
            raise BadBody(f"every line of a batch names the same model (this file names {len(models)}: "
                          f"{', '.join(sorted(models)[:5])})", "input_file_id")
        [asked] = models
        if asked == "auto" or asked.startswith("tier:"):
            raise BadBody("a batch names its model; 'auto' and 'tier:' are for online calls", "input_file_id")
        model, _, _ = await self.server.choose(asked, key)
        batch_id = "batch_" + new_id()[:24]
        tags = {**self.server.tags(request, key), BATCH_TAG: batch_id}
        gateway = self.server.gateway
        assert gateway is not None
        ticket = await gateway.submit_batch([(cid, req) for cid, _, req in lines], model=model, tags=tags,
                                            limits=self.server.limits(key), cache=self.server.caching(request))
        record = {
            "id": batch_id, "team": key.team, "key_id": key.id, "model": model, "input_file_id": file_id,
            "metadata": metadata, "created_at": int(time.time()), "order": [cid for cid, _, _ in lines],
            "vendor": {ticket.batch_id: list(ticket.submitted)} if ticket.batch_id else {},
            "waiting": dict(ticket.waiting), "vanished": {},
            "cached": {cid: {"response": _answer(gen)} for cid, gen in ticket.cached.items()},
            "reserved_usd": ticket.reserved_usd, "tags": tags, "cancelled": False,
        }
        await self._put(f"{BATCHES}{batch_id}.json", record)
        return json_answer(200, await self._refresh(record, key))

    async def batch(self, request: Request, batch_id: str, cancel: bool = False) -> Answer:
        key = await self._key(request)
        final = await self._get(f"{BATCHES}{batch_id}/final.json")
        if final is not None:
            self._owned(final.get("record"), key, "batch", batch_id)
            return json_answer(200, final["body"])
        record = self._owned(await self._get(f"{BATCHES}{batch_id}.json"), key, "batch", batch_id)
        if cancel and not record["cancelled"]:
            record["cancelled"] = True
            await self._put(f"{BATCHES}{batch_id}.json", record)
        return json_answer(200, await self._refresh(record, key))

    async def _refresh(self, record: dict[str, Any], key: VirtualKey) -> dict[str, Any]:
        """Collect what the vendor has finished, then the batch as OpenAI shows it (final once all is in)."""
        gateway = self.server.gateway
        assert gateway is not None
        batch_id = record["id"]
        parts: dict[str, Any] = {}
        changed = False
        for vendor_id in list(record["vendor"]):
            part, pending = await self._collected(vendor_id, record["cancelled"])
            if part is None and not pending:  # collected by another replica, whose part should follow shortly
                seen = record["vanished"].setdefault(vendor_id, time.time())
                changed = True
                if time.time() - seen > VANISHED_GRACE_S:
                    # That replica stopped before saving its part. What it settled it also cached: ask again.
                    log.warning("batch %s: %s was collected elsewhere without its answers being saved; its "
                                "lines are asked again from the cache", batch_id, vendor_id)
                    record["waiting"].update(dict.fromkeys(record["vendor"].pop(vendor_id), ""))
            if part is not None:
                parts[vendor_id] = part
        if record["waiting"]:
            await self._resolve_waiting(record, key)
        elif changed:
            await self._put(f"{BATCHES}{batch_id}.json", record)
        results: dict[str, Any] = dict(record["cached"])
        for part in parts.values():
            results.update(part["results"])
        done = len(parts) == len(record["vendor"]) and not record["waiting"]
        body = self._body(record, results, parts, done)
        if done:
            body["output_file_id"] = await self._write_file(
                key, [self._line(batch_id, cid, results[cid]) for cid in record["order"]
                      if "response" in results.get(cid, {})], f"{batch_id}_output.jsonl")
            failed = [self._line(batch_id, cid, results.get(cid) or _failure("no answer"))
                      for cid in record["order"] if "response" not in results.get(cid, {})]
            body["error_file_id"] = await self._write_file(key, failed, f"{batch_id}_error.jsonl") if failed else None
            await self._put(f"{BATCHES}{batch_id}/final.json", {"record": {"team": record["team"]}, "body": body})
        return body

    async def _collected(self, vendor_id: str, cancel: bool = False) -> tuple[dict[str, Any] | None, bool]:
        """The saved part of a vendor batch, collecting it first when it has finished (any batch of this server
        may: lines of another batch can wait on it); and whether it is still pending."""
        part = await self._get(f"{VENDOR}{vendor_id}.json")
        if part is not None:
            return part, False
        gateway = self.server.gateway
        assert gateway is not None
        if not await gateway.batch_pending(vendor_id):
            return None, False
        try:
            outcome = await gateway.collect_batch(vendor_id, cancel=cancel)
        except ContentmillError as exc:  # the vendor did not answer, or another replica took it just now
            log.info("vendor batch %s not collected this time: %s", vendor_id, exc)
            return None, True
        if outcome is None:
            return None, True
        part = _part(outcome)
        await self._put(f"{VENDOR}{vendor_id}.json", part)
        return part, False

    async def _resolve_waiting(self, record: dict[str, Any], key: VirtualKey) -> None:
        """Lines an earlier batch was already asking: once that batch is collected their answers are in the
        cache, and submitting them again answers them from it (anything not there goes out as a new batch)."""
        gateway = self.server.gateway
        assert gateway is not None
        still = {}
        for cid, vendor_id in record["waiting"].items():
            if vendor_id and (await self._collected(vendor_id))[1]:
                still[cid] = vendor_id
        if len(still) == len(record["waiting"]):
            return
        data = await self._content(record["input_file_id"]) or b""
        requests = {cid: req for cid, _, req in parse_lines(data, self.server.settings.server_default_max_tokens)}
        ready = [(cid, requests[cid]) for cid in record["waiting"] if cid not in still]
        if not ready:
            return
        if record["cancelled"]:
            for cid, _ in ready:
                record["cached"][cid] = _failure("the batch was cancelled before this line was answered",
                                                 "batch_cancelled")
            record["waiting"] = still
        else:
            ticket = await gateway.submit_batch(ready, model=record["model"], tags=record["tags"],
                                                limits=self.server.limits(key))
            for cid, gen in ticket.cached.items():
                record["cached"][cid] = {"response": _answer(gen)}
            if ticket.batch_id:
                record["vendor"][ticket.batch_id] = list(ticket.submitted)
            record["waiting"] = {**still, **ticket.waiting}
        await self._put(f"{BATCHES}{record['id']}.json", record)

    @staticmethod
    def _line(batch_id: str, custom_id: str, result: Mapping[str, Any]) -> dict[str, Any]:
        response = result.get("response")
        if response is not None:
            response = {k: v for k, v in response.items() if k not in ("cost_usd", "cached")}
        return {"id": _line_id(batch_id, custom_id), "custom_id": custom_id, "response": response,
                "error": result.get("error")}

    @staticmethod
    def _body(record: Mapping[str, Any], results: Mapping[str, Any], parts: Mapping[str, Any], done: bool
              ) -> dict[str, Any]:
        """The batch object of OpenAI's API, with what it cost under ``contentmill``."""
        answered = [r["response"] for r in results.values() if "response" in r]
        failed = sum(1 for r in results.values() if "error" in r)
        statuses = {p["vendor_status"] for p in parts.values()}
        if not done:
            status = "cancelling" if record["cancelled"] else "in_progress"
        elif record["cancelled"]:
            status = "cancelled"
        elif statuses and statuses <= {"failed"} and not answered:
            status = "failed"
        elif statuses and statuses <= {"expired"}:
            status = "expired"
        else:
            status = "completed"
        now, created = int(time.time()), int(record["created_at"])
        usage = {"input_tokens": sum(r["body"]["usage"]["prompt_tokens"] for r in answered),
                 "output_tokens": sum(r["body"]["usage"]["completion_tokens"] for r in answered)}
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        return {
            "id": record["id"], "object": "batch", "endpoint": ENDPOINT, "errors": None,
            "input_file_id": record["input_file_id"], "completion_window": COMPLETION_WINDOW, "status": status,
            "output_file_id": None, "error_file_id": None, "created_at": created, "in_progress_at": created,
            "expires_at": created + WINDOW_S, "finalizing_at": now if done else None,
            "completed_at": now if status == "completed" else None,
            "failed_at": now if status == "failed" else None, "expired_at": now if status == "expired" else None,
            "cancelling_at": now if record["cancelled"] else None,
            "cancelled_at": now if status == "cancelled" else None,
            "request_counts": {"total": len(record["order"]), "completed": len(answered), "failed": failed},
            "metadata": record["metadata"], "usage": usage,
            "contentmill": {"model": record["model"], "reserved_usd": record["reserved_usd"],
                            "cost_usd": sum(r["cost_usd"] for r in answered),
                            "cached": sum(1 for r in answered if r["cached"])},
        }

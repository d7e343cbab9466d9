"""What a client uploads for the Batch API, read and checked before anything is stored or reserved: the
multipart/form-data upload of a batch input file, and its lines, each a chat completion request checked as the
online endpoint checks one (a bad line is refused with its number, so the client knows which to fix)."""

from __future__ import annotations

from dataclasses import dataclass

from python_multipart.multipart import MultipartParser, parse_options_header

from contentmill.providers.batch import ENDPOINT
from contentmill.requests import TextRequest
from contentmill.server.protocol import BadBody, parse_chat, parse_json

MAX_LINES = 50_000  # OpenAI's limit on requests per batch


@dataclass(frozen=True, slots=True)
class Upload:
    filename: str
    purpose: str
    data: bytes


def parse_upload(content_type: str | None, body: bytes) -> Upload:
    """The ``file`` and ``purpose`` fields of a multipart/form-data body."""
    kind, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise BadBody("upload the file as multipart/form-data with the fields 'file' and 'purpose'", "file")
    parts: list[tuple[dict[bytes, bytes], bytearray]] = []
    header: list[bytes] = [b"", b""]
    headers: dict[bytes, bytes] = {}

    def begin() -> None:
        headers.clear()
        parts.append(({}, bytearray()))

    def field(data: bytes, start: int, end: int) -> None:
        header[0] += data[start:end]

    def value(data: bytes, start: int, end: int) -> None:
        header[1] += data[start:end]

    def header_end() -> None:
        parts[-1][0][header[0].strip().lower()] = header[1].strip()
        header[0], header[1] = b"", b""

    def data(chunk: bytes, start: int, end: int) -> None:
        parts[-1][1].extend(chunk[start:end])

    parser = MultipartParser(boundary, {"on_part_begin": begin, "on_header_field": field,
                                        "on_header_value": value, "on_header_end": header_end,
                                        "on_part_data": data})
    try:
        parser.write(body)
        parser.finalize()
    except Exception:  # the parser's own errors name no field a client could fix
        raise BadBody("the multipart/form-data body is malformed", "file") from None
    fields: dict[str, tuple[bytes | None, bytes]] = {}
    for part_headers, content in parts:
        _, disposition = parse_options_header(part_headers.get(b"content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        fields[name] = (disposition.get(b"filename"), bytes(content))
    if "file" not in fields:
        raise BadBody("the upload has no 'file' field", "file")
    purpose = fields.get("purpose", (None, b""))[1].decode("utf-8", "replace").strip()
    if purpose != "batch":
        raise BadBody(f"'purpose' must be 'batch' (got {purpose!r}): this server keeps files for the Batch API "
                      "only", "purpose")
    filename = (fields["file"][0] or b"batch.jsonl").decode("utf-8", "replace")
    return Upload(filename[:255], purpose, fields["file"][1])


def parse_lines(data: bytes, default_max_tokens: int) -> list[tuple[str, str, TextRequest]]:
    """(custom id, model, request) of each line of a batch input file, checked as the online endpoint checks."""
    lines = [(number, line) for number, line in enumerate(data.splitlines(), 1) if line.strip()]
    if not lines:
        raise BadBody("the input file holds no requests: one JSON object a line", "input_file_id")
    if len(lines) > MAX_LINES:
        raise BadBody(f"a batch holds at most {MAX_LINES} requests (the file has {len(lines)})", "input_file_id")
    seen: set[str] = set()
    parsed = []
    for number, line in lines:
        try:
            item = parse_json(line)
            custom_id = item.get("custom_id")
            if not isinstance(custom_id, str) or not custom_id:
                raise BadBody("'custom_id' must be a non-empty string")
            if custom_id in seen:
                raise BadBody(f"'custom_id' {custom_id!r} is used by an earlier line; each must be unique")
            if item.get("method", "POST") != "POST" or item.get("url") != ENDPOINT:
                raise BadBody(f"'method' must be POST and 'url' {ENDPOINT}")
            body = item.get("body")
            if not isinstance(body, dict):
                raise BadBody("'body' must be a chat completion request object")
            call = parse_chat(body, default_max_tokens)
            if call.stream:
                raise BadBody("'stream' cannot be true in a batch")
        except BadBody as exc:
            raise BadBody(f"line {number} of the input file: {exc}", "input_file_id") from None
        seen.add(custom_id)
        parsed.append((custom_id, call.model, call.request))
    return parsed

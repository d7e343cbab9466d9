"""``contentmill serve`` and ``contentmill keys``: the gateway as an OpenAI-compatible server, and its keys.

Keys live in the ledger database (CONTENTMILL_DATABASE_URL, else the SQLite file in CONTENTMILL_DATA_DIR), so
a key made here works on every server that shares that database. A key's secret is printed once, by
``create`` and ``rotate``; nothing can show it again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.table import Column, Table

from contentmill.commands import JsonOption, emit_json, fail, settings_or_fail, wide_console
from contentmill.commands.budget import PeriodChoice
from contentmill.errors import ContentmillError
from contentmill.ledger import LedgerStore, settings_url
from contentmill.server.keys import ROLES, IssuedKey, KeyStore, VirtualKey

keys_app = typer.Typer(help="Virtual keys of the gateway server: create, list, revoke, rotate.",
                       add_completion=False)


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 exposes it to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port; 0 picks a free one.")] = 8400,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes; they share limits and budgets.")] = 1,
) -> None:
    """Serve the gateway as an OpenAI-compatible API; prints `ready http://HOST:PORT/v1` once it answers."""
    from contentmill.server.run import serve as run_server

    settings = settings_or_fail()
    try:
        LedgerStore(settings_url(settings)).migrate()
        run_server(settings, host, port, workers)
    except ContentmillError as exc:
        fail(str(exc))


def _keys() -> KeyStore:
    try:
        store = LedgerStore(settings_url(settings_or_fail()))
        store.migrate()
    except ContentmillError as exc:
        fail(str(exc))
    return KeyStore(store)


def _expiry(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        fail(f"--expires takes an ISO 8601 time with a zone, e.g. 2027-01-31T00:00:00Z (got {text!r})")
    if moment.tzinfo is None:
        fail(f"--expires needs a time zone, e.g. {text}Z or {text}+02:00")
    return moment


def _issued(issued: IssuedKey, json_out: bool, verb: str) -> None:
    if json_out:
        emit_json(issued.as_dict())
        return
    key = issued.key
    print(f"{verb} key {key.id} for team {key.team}; the secret is shown this once:")
    print(issued.secret)


@keys_app.command("create")
def create(
    team: Annotated[str, typer.Option(help="The team whose budgets and limits apply (tag team=...).")],
    project: Annotated[str | None, typer.Option(help="Tag project=... on every call.")] = None,
    user: Annotated[str | None, typer.Option(help="Tag user=... on every call.")] = None,
    name: Annotated[str, typer.Option(help="A label to tell keys apart.")] = "",
    budget_usd: Annotated[float | None, typer.Option(min=0.000001, help="The key's own hard budget.")] = None,
    period: Annotated[PeriodChoice, typer.Option(help="The budget's calendar period.")] = PeriodChoice.month,
    rpm: Annotated[int | None, typer.Option(min=1, help="Requests per minute for this key.")] = None,
    tpm: Annotated[int | None, typer.Option(min=1, help="Tokens per minute for this key.")] = None,
    models: Annotated[str | None, typer.Option(help="Allowed models and tiers, comma-separated "
                                                    "(gpt-4o-mini,tier:light); default all.")] = None,
    expires: Annotated[str | None, typer.Option(help="ISO 8601 expiry with a zone.")] = None,
    role: Annotated[str, typer.Option(help=f"{' or '.join(ROLES)}: 'read' keys see the dashboard, "
                                           "call no model.")] = "api",
    json_out: JsonOption = False,
) -> None:
    """Make a key; its secret is printed once."""
    keys = _keys()
    try:
        issued = keys.create(team, name=name, project=project, user=user, role=role, budget_usd=budget_usd,
                             period=period.value, rpm=rpm, tpm=tpm, models=(models or "").split(","),
                             expires_at=_expiry(expires))
    except ContentmillError as exc:
        fail(str(exc))
    _issued(issued, json_out, "made")


def _limits(key: VirtualKey) -> str:
    parts = []
    if key.budget_usd:
        parts.append(f"${key.budget_usd:g}/{key.period}")
    if key.rpm:
        parts.append(f"{key.rpm} rpm")
    if key.tpm:
        parts.append(f"{key.tpm} tpm")
    return ", ".join(parts) or "-"


@keys_app.command("list")
def list_keys(
    team: Annotated[str | None, typer.Option(help="Only this team's keys.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Every key with its owner, limits and state (never a secret)."""
    keys = _keys()
    try:
        listed = keys.list(team=team)
    except ContentmillError as exc:
        fail(str(exc))
    if json_out:
        emit_json({"keys": [k.as_dict() for k in listed]})
        return
    # The id whole, to copy into keys revoke/rotate.
    table = Table(Column("id", no_wrap=True, min_width=18), "name", "hint", "team", "project", "role", "limits",
                  "models", "state", "expires")
    for key in listed:
        table.add_row(key.id, key.name, key.hint, key.team, key.project or "-", key.role, _limits(key),
                      ",".join(key.models) or "all", key.state(),
                      key.expires_at.isoformat(timespec="minutes") if key.expires_at else "-")
    wide_console(170).print(table)


@keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (keys list).")], json_out: JsonOption = False
           ) -> None:
    """Stop a key; every server refuses it within a second."""
    keys = _keys()
    try:
        key = keys.revoke(key_id)
    except ContentmillError as exc:
        fail(str(exc))
    if json_out:
        emit_json(key.as_dict())
    else:
        print(f"revoked key {key.id} ({key.name})")


@keys_app.command("rotate")
def rotate(key_id: Annotated[str, typer.Argument(help="The key's id (keys list).")], json_out: JsonOption = False
           ) -> None:
    """A new secret for a key (same id, limits and spend); the old secret stops working."""
    keys = _keys()
    try:
        issued = keys.rotate(key_id)
    except ContentmillError as exc:
        fail(str(exc))
    _issued(issued, json_out, "rotated")

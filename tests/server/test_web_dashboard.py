"""The operators' dashboard in a real Chromium against ``contentmill serve`` over a seeded ledger: its total equals
``contentmill report``'s and the ledger's for the same window, a budget near its limit shows its forecast, a
read-only key sees everything but cannot create keys (page and API), the admin creates and revokes keys, and the
page fits a 1280x800 screen and a phone's."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import ADMIN_KEY, UPSTREAM_KEY, ledger, make_key, server_env
from web_browser import PHONE, WIDE, chromium, screenshot_path, sign_in

from contentmill.knowledge_graph.store import GraphStore
from contentmill.ledger import Alert, Budget, CallRecord, LedgerStore, forecast_budget
from contentmill.metering import Usage
from contentmill.routing.store import write_decisions
from contentmill.server.keys import KeyStore
from contentmill.settings import Settings
from contentmill.testing.harness import Served, start_gateway_server

TEAMS = ("shop", "ads", "video", "search")
MODELS = ("openai:gpt-4o-mini", "openai:gpt-4o", "deepseek:deepseek-chat")
LAUNCH_LIMIT = 1.0


@dataclass
class Seeded:
    server: Served
    env: dict[str, str]
    since: datetime
    until: datetime
    records: list[CallRecord]
    read_key: str

    def query(self, by: str = "team") -> str:
        return f"/?period=custom&since={self.since:%Y-%m-%dT%H:%M}&until={self.until:%Y-%m-%dT%H:%M}&by={by}"

    def expected_total(self) -> float:
        """The window's spend summed here, from what was written: charged outcomes in [since, until)."""
        return sum(r.cost_usd for r in self.records
                   if self.since <= r.ts < self.until and r.outcome not in ("cached", "refused"))


def _call(ts: datetime, team: str, cost: float, rng: random.Random, **fields: Any) -> CallRecord:
    options: dict[str, Any] = {"outcome": "ok", "cache_status": "miss",
                               "tags": {"team": team, "project": f"{team}-main"}, **fields}
    return CallRecord(model=rng.choice(MODELS), api_type="text", estimate=Usage(input_tokens=200, output_tokens=80),
                      usage=Usage(input_tokens=200, output_tokens=rng.randint(40, 400)), cost_usd=cost, ts=ts,
                      **options)


def _seed(store: LedgerStore, now: datetime) -> tuple[datetime, datetime, list[CallRecord]]:
    """Three days of hourly calls by four teams, a spike of ads in the last two hours, cache hits, refusals and
    errors, rows just outside the window on both sides, and a team near its monthly budget."""
    rng = random.Random(13)
    until = now.replace(minute=0, second=0, microsecond=0)
    since = until - timedelta(hours=72)
    records = []
    for hour in range(72):
        start = until - timedelta(hours=hour + 1)
        for team in TEAMS:
            for _ in range(2):
                cost = round(rng.uniform(0.001, 0.05), 7) * (12 if team == "ads" and hour < 2 else 1)
                records.append(_call(start + timedelta(seconds=rng.randint(0, 3599)), team, cost, rng))
        records.append(_call(start + timedelta(minutes=7), "shop", 0.0, rng, outcome="cached",
                             cache_status=rng.choice(("hit:l1", "hit:l2")), saved_usd=0.02))
        if hour % 9 == 0:
            records.append(_call(start + timedelta(minutes=9), "video", 0.0, rng, outcome="refused"))
            records.append(_call(start + timedelta(minutes=11), "search", 0.0031, rng, outcome="error",
                                 error_type="ProviderTimeout"))
    records += [_call(since, "shop", 0.0123457, rng), _call(since - timedelta(microseconds=1), "shop", 5.0, rng),
                _call(until, "ads", 7.0, rng)]
    records += [_call(now - timedelta(minutes=2 + i), "launch", LAUNCH_LIMIT * 0.1, rng) for i in range(9)]
    store.write_calls(records)
    store.set_budget(Budget("team", "launch", "month", LAUNCH_LIMIT))
    store.set_budget(Budget("team", "shop", "month", 1000.0))
    store.add_alert(Alert(rule="budget_used", severity="warning", subject="team=launch/month",
                          message="team=launch used 90% of its month budget", ts=until - timedelta(minutes=30)))
    store.add_alert(Alert(rule="large_generation", severity="warning", subject="team=ads",
                          message="one openai:gpt-4o call used 12,400 tokens (alert at 5,000)",
                          data={"tokens": 12400, "cost_usd": 0.4321, "team": "ads"}, ts=until - timedelta(hours=2)))
    write_decisions(store, [{
        "id": "rd-dashboard-1", "ts": until - timedelta(hours=3), "request_hash": "rd-dashboard-1",
        "task_kind": "chat", "chosen_model": "openai:gpt-4o-mini", "tier": "cheap", "priority": "normal",
        "weights": {"quality": 0.5, "cost": 0.5}, "candidates": [
            {"model": "openai:gpt-4o-mini", "raw": {}, "samples": {}, "scores": {},
             "contributions": {"quality": 0.31, "cost": 0.45}, "total": 0.76, "excluded": None},
            {"model": "openai:gpt-4o", "raw": {}, "samples": {}, "scores": {},
             "contributions": {"quality": 0.47, "cost": 0.05}, "total": 0.52, "excluded": None}],
        "reason": "cheapest model of tier cheap whose quality clears the floor", "downgraded_from": None}])
    return since, until, records


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """One server over one seeded ledger for the module (the tests only read, or add keys)."""
    env = server_env("http://127.0.0.1:9/v1", tmp_path_factory.mktemp("dashboard") / "data")
    store = ledger(env)
    try:
        since, until, records = _seed(store, datetime.now(UTC))
    finally:
        store.close()
    read = make_key(env, team="ops", role="read", name="ops-viewer")
    creator = make_key(env, team="studio", name="creator-key", budget_usd=10.0, period="day")
    store = ledger(env)
    try:  # 3 USD spent with the creator's key this day: 30% of its budget
        rng = random.Random(7)
        store.write_calls([_call(datetime.now(UTC) - timedelta(seconds=30 + i), "studio", 1.0, rng,
                                 tags={"team": "studio", "vkey": creator.key.id}) for i in range(3)])
    finally:
        store.close()
    graph = GraphStore.from_settings(Settings(data_dir=Path(env["CONTENTMILL_DATA_DIR"])))
    try:
        graph.migrate()
        for number, reused in enumerate((True, True, False)):
            graph.add_decision({
                "id": f"kgd{number}", "ts": until - timedelta(hours=5), "request_key": f"rk{number}",
                "kind": "product_description", "language": "en", "entity": None, "template": "describe@1",
                "text": "a blue mug", "reused": reused, "score": 0.97 if reused else 0.4, "threshold": 0.9,
                "matched_request": None, "matched_output": None, "saved_usd": 0.125 if reused else 0.0,
                "reason": "same constraints" if reused else "no close output"})
    finally:
        graph.close()
    server = start_gateway_server(env)
    try:
        yield Seeded(server, env, since, until, records, read.secret)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def _report_total(seeded: Seeded, by: str) -> float:
    """``contentmill report --json`` over the same window, as an operator would run it."""
    done = subprocess.run(
        [sys.executable, "-m", "contentmill.cli", "report", "--by", by, "--since", seeded.since.isoformat(),
         "--until", seeded.until.isoformat(), "--json"],
        env=seeded.env, capture_output=True, text=True, timeout=120, check=True)
    return float(json.loads(done.stdout)["total"]["cost_usd"])


@pytest.mark.slow  # drives Chromium
def test_the_dashboard_total_equals_the_report_and_the_ledger(seeded: Seeded, browser: Any, tmp_path: Path) -> None:
    page = browser.new_page(viewport=WIDE)
    sign_in(page, seeded.server.root_url, seeded.read_key)
    page.goto(seeded.server.root_url + seeded.query("team"))
    shown = float(page.get_by_test_id("spend-total").inner_text())
    assert round(shown, 2) == round(_report_total(seeded, "team"), 2) == round(seeded.expected_total(), 2)
    assert shown == pytest.approx(seeded.expected_total(), abs=1e-6)

    chart = page.get_by_test_id("spend-chart")
    assert chart.locator("rect").count() > 72 and chart.locator("path.anomaly").count() >= 1
    assert "ads" in page.get_by_test_id("anomaly-list").inner_text()
    assert "team=launch used 90%" in page.get_by_test_id("alert-list").inner_text()
    large = page.get_by_test_id("large-calls").inner_text()
    assert "12,400 tokens" in large and "$0.432100" in large
    cache = page.get_by_test_id("cache-card").inner_text()
    assert "72 hits" in cache and "$1.4400 saved" in cache  # one hit an hour, 0.02 USD saved each
    assert "2 of 3" in page.get_by_test_id("reuse-row").inner_text()  # the graph's reuse: 2 of 3 decisions
    assert "$0.250000" in page.get_by_test_id("reuse-row").inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDE["width"]
    page.screenshot(path=screenshot_path("dashboard.png", tmp_path), full_page=True)

    page.select_option("#by", "model")  # the picker: the same window stacked by model keeps its total
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**by=model**")
    assert float(page.get_by_test_id("spend-total").inner_text()) == pytest.approx(shown, abs=1e-6)
    assert "deepseek:deepseek-chat" in (page.get_by_test_id("spend-groups").text_content() or "")

    phone = browser.new_page(viewport=PHONE)
    sign_in(phone, seeded.server.root_url, seeded.read_key)
    phone.goto(seeded.server.root_url + seeded.query("team"))
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert phone.get_by_test_id("spend-total").is_visible()
    phone.screenshot(path=screenshot_path("dashboard-phone.png", tmp_path), full_page=True)


@pytest.mark.slow  # drives Chromium
def test_a_budget_near_its_limit_shows_its_forecast_and_the_day_it_runs_out(seeded: Seeded, browser: Any) -> None:
    page = browser.new_page(viewport=WIDE)
    sign_in(page, seeded.server.root_url, ADMIN_KEY)
    budget = page.get_by_test_id("budget-team=launch")
    assert "90.0%" in budget.get_by_test_id("budget-used").inner_text()
    store = ledger(seeded.env)
    try:
        expected = forecast_budget(store, Budget("team", "launch", "month", LAUNCH_LIMIT), datetime.now(UTC))
    finally:
        store.close()
    shown = float(budget.get_by_test_id("budget-forecast").inner_text().lstrip("$").replace(",", ""))
    assert shown > LAUNCH_LIMIT
    assert shown == pytest.approx(expected.projected_usd, rel=0.05)
    assert "runs out" in budget.get_by_test_id("budget-runs-out").inner_text()
    assert "lasts the period" in page.get_by_test_id("budget-team=shop").inner_text()


@pytest.mark.slow  # drives Chromium
def test_a_read_only_key_sees_the_keys_but_cannot_create_them(seeded: Seeded, browser: Any) -> None:
    page = browser.new_page(viewport=WIDE)
    sign_in(page, seeded.server.root_url, seeded.read_key)
    assert "ops-viewer" in page.get_by_test_id("keys-list").inner_text()
    creator = page.get_by_test_id("keys-list").locator("tr", has_text="creator-key").inner_text()
    assert "$3.0000" in creator and "$10.0000" in creator and "30.0% used" in creator  # its spend this day
    assert page.get_by_test_id("key-create-form").count() == 0
    assert page.locator("form[action$='/revoke']").count() == 0
    store = ledger(seeded.env)
    before = len(KeyStore(store).list())
    auth = {"authorization": f"Bearer {seeded.read_key}"}
    with httpx.Client(base_url=seeded.server.root_url, timeout=10) as client:
        by_form = client.post("/keys", data={"team": "ops", "role": "api"}, headers={**auth, "accept": "text/html"})
        assert by_form.status_code == 403 and "a key of role read cannot open /keys" in by_form.text
        by_api = client.post("/admin/keys", json={"team": "ops"}, headers=auth)
        assert by_api.status_code == 403 and by_api.json()["error"]["code"] == "admin_key_required"
    try:
        assert len(KeyStore(store).list()) == before
    finally:
        store.close()


@pytest.mark.slow  # drives Chromium
def test_the_admin_creates_a_key_on_the_page_and_revokes_it(seeded: Seeded, browser: Any) -> None:
    page = browser.new_page(viewport=WIDE)
    sign_in(page, seeded.server.root_url, ADMIN_KEY)
    form = page.get_by_test_id("key-create-form")
    form.locator("[name=team]").fill("studio")
    form.locator("[name=name]").fill("creator-1")
    form.locator("[name=budget_usd]").fill("25")
    page.get_by_test_id("key-create-button").click()
    secret = page.get_by_test_id("new-key-secret").inner_text().strip()
    assert secret.startswith("cm-")
    with httpx.Client(base_url=seeded.server.base_url, timeout=10) as client:
        assert client.get("/models", headers={"authorization": f"Bearer {secret}"}).status_code == 200
    page.goto(seeded.server.root_url + "/")
    row = page.locator("tr", has_text="creator-1")
    assert "$25.0000" in row.inner_text()
    row.get_by_role("button", name="Revoke").click()
    page.wait_for_url("**/#keys")
    assert "revoked" in page.locator("tr", has_text="creator-1").inner_text()
    with httpx.Client(base_url=seeded.server.base_url, timeout=10) as client:
        assert client.get("/models", headers={"authorization": f"Bearer {secret}"}).status_code == 401


def test_a_routing_share_links_to_the_decision_that_explains_it(seeded: Seeded) -> None:
    with httpx.Client(base_url=seeded.server.root_url, timeout=10,
                      headers={"authorization": f"Bearer {seeded.read_key}"}) as client:
        page = client.get(seeded.query("team"))
        assert 'href="/decisions/rd-dashboard-1"' in page.text
        decision = client.get("/decisions/rd-dashboard-1")
        assert decision.status_code == 200
        assert "cheapest model of tier cheap" in decision.text and "0.760" in decision.text
        assert client.get("/decisions/nope").status_code == 404


def test_spend_by_key_names_the_keys(seeded: Seeded) -> None:
    with httpx.Client(base_url=seeded.server.root_url, timeout=10,
                      headers={"authorization": f"Bearer {seeded.read_key}"}) as client:
        page = client.get("/?period=24h&by=vkey")
    assert page.status_code == 200
    assert "creator-key (vk" in page.text and "$3.0000" in page.text


def test_a_bad_window_is_a_one_line_400_that_says_what_to_fix(seeded: Seeded) -> None:
    with httpx.Client(base_url=seeded.server.root_url, timeout=10,
                      headers={"authorization": f"Bearer {seeded.read_key}", "accept": "text/html"}) as client:
        for query, words in (("period=year", "period is one of 24h, 7d, 30d or custom"),
                             ("period=custom&since=yesterday", "since takes an ISO 8601 time"),
                             ("by=bad%20tag", "cannot group by &#39;bad tag&#39;")):
            answer = client.get(f"/?{query}")
            assert answer.status_code == 400, query
            assert words in answer.text and "Traceback" not in answer.text


def test_a_budget_shows_what_a_call_in_flight_holds(serve: Any, upstream: Any, tmp_path: Path) -> None:
    slow = upstream(api_key=[UPSTREAM_KEY], latency_ms=3000)
    env = server_env(slow.base_url, tmp_path / "data")
    store = ledger(env)
    try:
        store.set_budget(Budget("team", "shop", "day", 5.0))
    finally:
        store.close()
    key = make_key(env, team="shop")
    server = serve(env)

    def reserved(client: httpx.Client) -> float:
        found = re.search(r'data-testid="budget-reserved">\$([0-9.,]+)<', client.get("/").text)
        assert found is not None
        return float(found.group(1).replace(",", ""))

    body = {"model": "gpt-4o-mini", "max_tokens": 400, "messages": [{"role": "user", "content": "A mug tagline"}]}
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=server.root_url, timeout=30, headers=admin) as client, ThreadPoolExecutor(1) as pool:
        assert reserved(client) == 0.0
        call = pool.submit(httpx.post, server.base_url + "/chat/completions", json=body, timeout=30,
                           headers={"authorization": f"Bearer {key.secret}"})
        held, deadline = 0.0, time.monotonic() + 10
        while held == 0.0 and time.monotonic() < deadline and not call.done():
            held = reserved(client)
        assert held > 0.0  # the call's reservation, while the upstream takes its 3 s
        assert call.result().status_code == 200
        deadline = time.monotonic() + 5  # settled once the ledger keeps the call's row, within its writer's round
        while held > 0.0 and time.monotonic() < deadline:
            held = reserved(client)
        assert held == 0.0

"""Who may open the web pages, over plain HTTP against ``contentmill serve``: bearer keys, the sign-in form and its
session cookie, roles, and the static files' caching."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from server_helpers import ADMIN_KEY, ledger, make_key

from contentmill.server.keys import CACHE_S, KeyStore
from contentmill.testing.harness import Served

HTML = {"accept": "text/html,application/xhtml+xml"}


@pytest.fixture
def browser(server: Served) -> Iterator[httpx.Client]:
    """A client that keeps cookies and does not follow redirects, as a test of what the server says."""
    with httpx.Client(base_url=server.root_url, timeout=10, follow_redirects=False) as client:
        yield client


def _bearer(key: str) -> dict[str, str]:
    return {**HTML, "authorization": f"Bearer {key}"}


def test_a_page_without_a_key_sends_a_browser_to_sign_in_and_a_script_gets_401(browser: httpx.Client) -> None:
    page = browser.get("/?period=7d", headers=HTML)
    assert page.status_code == 303
    assert page.headers["location"] == "/signin?next=/%3Fperiod%3D7d"
    scripted = browser.get("/", headers={"accept": "application/json"})
    assert scripted.status_code == 401
    assert scripted.json()["error"]["code"] == "invalid_api_key"
    assert "sign in at /signin" in scripted.json()["error"]["message"]


def test_bearer_keys_open_pages_by_role(browser: httpx.Client, env: dict[str, str]) -> None:
    read = make_key(env, role="read")
    api = make_key(env)
    assert browser.get("/", headers=_bearer(read.secret)).status_code == 200
    assert browser.get("/", headers=_bearer(ADMIN_KEY)).status_code == 200
    wrong_role = browser.get("/", headers=_bearer(api.secret))
    assert wrong_role.status_code == 403
    assert "a key of role api cannot open /" in wrong_role.text
    bad = browser.get("/", headers=_bearer("cm-not-a-key"))
    assert bad.status_code == 401
    assert "<!doctype html>" in bad.text and 'href="/signin"' in bad.text


def test_the_sign_in_form_sets_a_strict_httponly_cookie_without_the_key(
        browser: httpx.Client, env: dict[str, str]) -> None:
    read = make_key(env, role="read")
    form = browser.get("/signin?next=/", headers=HTML)
    assert form.status_code == 200 and 'name="key"' in form.text
    refused = browser.post("/signin", data={"key": "cm-wrong", "next": "/"})
    assert refused.status_code == 401
    assert 'data-testid="signin-error"' in refused.text
    assert "set-cookie" not in refused.headers

    for elsewhere in ("//evil.example/", "https://evil.example/", "/\t/evil.example", "/\\evil.example"):
        away = browser.post("/signin", data={"key": read.secret, "next": elsewhere})
        assert away.status_code == 303 and away.headers["location"] == "/", elsewhere
    signed = browser.post("/signin", data={"key": read.secret, "next": "/"})
    assert signed.status_code == 303 and signed.headers["location"] == "/"
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert read.secret not in cookie and read.secret[3:20] not in cookie
    page = browser.get("/", headers=HTML)
    assert page.status_code == 200 and 'data-testid="viewer"' in page.text

    out = browser.post("/signout", headers={"origin": str(browser.base_url).rstrip("/")})
    assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]
    assert browser.get("/", headers=HTML).status_code == 303


def test_a_revoked_key_ends_its_sessions_and_a_forged_cookie_opens_nothing(
        browser: httpx.Client, env: dict[str, str]) -> None:
    read = make_key(env, role="read")
    assert browser.post("/signin", data={"key": read.secret}).status_code == 303
    assert browser.get("/", headers=HTML).status_code == 200
    value = browser.cookies["cm_session"]
    principal, expires, mac = value.split(".")
    forged = httpx.Client(base_url=browser.base_url, cookies={"cm_session": f"admin.{expires}.{mac}"})
    with forged:
        assert forged.get("/", headers=HTML).status_code == 303
    store = ledger(env)
    try:
        KeyStore(store).revoke(read.key.id)
    finally:
        store.close()
    time.sleep(CACHE_S)  # revocation reaches every process within CACHE_S
    assert browser.get("/", headers=HTML).status_code == 303


def test_a_form_posted_from_another_site_with_the_cookie_is_refused(
        browser: httpx.Client, env: dict[str, str]) -> None:
    assert browser.post("/signin", data={"key": ADMIN_KEY}).status_code == 303
    crossed = browser.post("/signout", headers={**HTML, "origin": "https://evil.example"})
    assert crossed.status_code == 403
    assert "sent from another site" in crossed.text


def test_static_files_are_cached_by_version_and_nothing_outside_is_served(browser: httpx.Client) -> None:
    page = browser.get("/signin", headers=HTML)
    href = page.text.split('rel="stylesheet" href="')[1].split('"')[0]
    assert href.startswith("/static/web.css?v=")
    css = browser.get(href)
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert css.headers["cache-control"] == "public, max-age=31536000, immutable"
    again = browser.get(href, headers={"if-none-match": css.headers["etag"]})
    assert again.status_code == 304
    for path in ("/static/../app.py", "/static/%2e%2e/site.py", "/static/nothing.css", "/static/"):
        assert browser.get(path).status_code == 404, path

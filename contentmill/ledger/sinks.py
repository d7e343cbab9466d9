"""Where alerts go: the log, a webhook, a Prefect artifact. A sink never raises: a broken webhook must not
break the model call that triggered the alert, so failures are logged and reported as ``False``.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any, Protocol, runtime_checkable

import httpx
from pydantic import SecretStr

from contentmill.ledger.records import Alert

log = logging.getLogger("contentmill.alerts")
_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.CRITICAL}

Delivery = bool | str  # True delivered, False failed, "skipped" when the sink does not apply here


@runtime_checkable
class AlertSink(Protocol):
    name: str

    def deliver(self, alert: Alert) -> Delivery: ...

    def close(self) -> None: ...


class LogSink:
    """Alerts as log records on ``contentmill.alerts``, at the alert's severity."""

    name = "log"

    def deliver(self, alert: Alert) -> Delivery:
        log.log(_LEVELS[alert.severity], "[%s] %s: %s", alert.rule, alert.subject, alert.message)
        return True

    def close(self) -> None:
        return None


class WebhookSink:
    """POST the alert as JSON; one retry after ``retry_delay_s``. The URL may hold a token, so it is never
    logged: messages name the host only."""

    name = "webhook"

    def __init__(
        self,
        url: str | SecretStr,
        *,
        timeout_s: float = 5.0,
        retry_delay_s: float = 0.5,
        headers: dict[str, str] | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        self._url = url if isinstance(url, SecretStr) else SecretStr(url)
        self.host = httpx.URL(self._url.get_secret_value()).host
        self.retry_delay_s = retry_delay_s
        self._own_client = client is None
        self._client = client or httpx.Client(timeout=timeout_s, headers=headers)

    def _post(self, body: bytes) -> None:
        response = self._client.post(
            self._url.get_secret_value(), content=body, headers={"content-type": "application/json"}
        )
        response.raise_for_status()

    def deliver(self, alert: Alert) -> Delivery:
        body = json.dumps({"alert": alert.as_dict()}, default=str).encode()
        for attempt in (1, 2):
            try:
                self._post(body)
                return True
            except httpx.HTTPStatusError as exc:
                problem = f"HTTP {exc.response.status_code}"
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
            if attempt == 1:
                time.sleep(self.retry_delay_s)
        log.warning("alert %s not delivered to %s: %s, after a retry", alert.id, self.host, problem)
        return False

    def close(self) -> None:
        if self._own_client:
            self._client.close()


def _artifact_key(text: str) -> str:
    """Prefect artifact keys hold only lower-case letters, digits and dashes."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", text.lower())).strip("-")


def markdown(alert: Alert) -> str:
    lines = [f"## {alert.severity.upper()}: {alert.rule}", "", alert.message, ""]
    lines += [f"- subject: `{alert.subject}`", f"- at: {alert.ts.isoformat()}"]
    lines += [f"- {key}: `{value}`" for key, value in alert.data.items()]
    return "\n".join(lines) + "\n"


class PrefectArtifactSink:
    """A markdown artifact on the flow or task run the alert was raised in; outside a run, a no-op."""

    name = "prefect"

    def __init__(self, key_prefix: str = "contentmill-alert") -> None:
        self.key_prefix = _artifact_key(key_prefix)

    @staticmethod
    def in_run() -> bool:
        from prefect.context import FlowRunContext, TaskRunContext

        return FlowRunContext.get() is not None or TaskRunContext.get() is not None

    def deliver(self, alert: Alert) -> Delivery:
        try:
            if not self.in_run():
                return "skipped"
            from prefect.artifacts import create_markdown_artifact

            # _sync: the alert may come from an async flow's context on a plain thread; create it here, now.
            options: dict[str, Any] = {"_sync": True}
            create_markdown_artifact(
                markdown=markdown(alert), key=_artifact_key(f"{self.key_prefix}-{alert.rule}"),
                description=alert.message[:500], **options,
            )
            return True
        except Exception as exc:  # noqa: BLE001 - an artifact failure must not reach the caller
            log.warning("alert %s not recorded as a Prefect artifact: %s", alert.id, type(exc).__name__)
            return False

    def close(self) -> None:
        return None

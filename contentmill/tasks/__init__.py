"""Thin Prefect tasks over the library steps, and the retry policy they share.

Tasks retry with exponential backoff and jitter, and only for failures that can pass by themselves (a
provider's 429/5xx/timeout after the gateway's own retries, a dropped connection). A budget, a key, a bad
request or a broken setting fails at once: retrying would only cost time or money.
"""

from __future__ import annotations

from typing import Any

from prefect.tasks import exponential_backoff

from contentmill.errors import ContentmillError, ProviderError, RateLimited

TASK_RETRIES = 2
RETRY_BACKOFF_S = 2.0
RETRY_JITTER = 0.5


def is_transient(error: BaseException) -> bool:
    """Whether running the step again later could succeed without anyone changing anything."""
    if isinstance(error, ProviderError):
        return error.retryable
    if isinstance(error, RateLimited):
        return True
    if isinstance(error, ContentmillError):
        return False  # budgets, credentials, settings, catalog, local engines: a person has to act
    return isinstance(error, ConnectionError | TimeoutError)


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's ``retry_condition_fn``: retry a failed task run only for a transient error."""
    error = getattr(state, "data", None)
    return isinstance(error, BaseException) and is_transient(error)


RETRY_OPTIONS: dict[str, Any] = {
    "retries": TASK_RETRIES,
    "retry_delay_seconds": exponential_backoff(backoff_factor=RETRY_BACKOFF_S),
    "retry_jitter_factor": RETRY_JITTER,
    "retry_condition_fn": retry_transient,
}

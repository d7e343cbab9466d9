"""contentmill's error tree as HTTP answers in OpenAI's shape, with the statuses OpenAI's SDKs expect.

=========================  ======  ======================  ==========================================
error                      status  code                    notes
=========================  ======  ======================  ==========================================
bad or missing key         401     invalid_api_key         the same answer for unknown, revoked, expired
model not allowed          403     model_not_allowed       the key's model list does not hold it
read-only key              403     read_only_key           a key of role read cannot call models
/metrics without rights    403     read_key_required       it needs the admin key or a read key
unknown route              404     not_found
unknown method of a route  405     method_not_allowed
unknown model              404     model_not_found
unknown key id (admin)     404     key_not_found
file or batch not found    404     not_found               also another team's file or batch
body not JSON              400     invalid_json
bad field                  400     invalid_value, ...      ``param`` names the field; also
                                                           missing_required_parameter, unsupported_parameter
body too large             413     request_too_large       CONTENTMILL_SERVER_MAX_BODY_BYTES (_FILE_BYTES)
context window             400     context_length_exceeded
unpriced model             400     model_not_priced        the operator's catalog lacks a price
RateLimited                429     rate_limit_exceeded     Retry-After
quota used up (period)     429     quota_exceeded          x-should-retry: false
BudgetExceeded             429     budget_exceeded         x-should-retry: false (the SDK must not retry)
RouteDeferred              429     deferred                x-should-retry: false (low-priority work)
vendor refused the body    400     upstream_bad_request    its message
vendor 429 after retries   503     upstream_rate_limited   Retry-After
vendor timeout             504     upstream_timeout
vendor down or garbled     502     upstream_error          also a vendor key the vendor refused
local engine failed        502     engine_error            the engine's message
no routable model          503     no_model_available
ledger unreachable         503     ledger_unavailable
anything else              500     internal_error          logged with its request id, never shown
=========================  ======  ======================  ==========================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from contentmill.errors import (
    AuthenticationError,
    BadRequest,
    BudgetExceeded,
    CatalogError,
    ConfigError,
    ContentmillError,
    EngineError,
    LedgerUnavailable,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    RateLimited,
    RequestTooLarge,
    RouteDeferred,
    RoutingError,
    UnknownModel,
    UnpricedModel,
)
from contentmill.server.keys import KeyNotFound
from contentmill.server.protocol import BadBody, error_body


@dataclass
class ApiError(Exception):
    """An answer the server gives instead of a result."""

    status: int
    message: str
    kind: str
    code: str | None
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, object]:
        return error_body(self.message, self.kind, self.code, self.param)


INVALID_KEY = ApiError(401, "invalid API key: pass a contentmill key as 'Authorization: Bearer cm-...'",
                       "invalid_request_error", "invalid_api_key")


def _retry_headers(seconds: float | None) -> dict[str, str]:
    if seconds is None:
        return {}
    return {"retry-after": str(max(1, math.ceil(seconds))), "retry-after-ms": str(max(1, round(seconds * 1000)))}


NO_RETRY = {"x-should-retry": "false"}


def api_error(error: BaseException) -> ApiError:
    """The answer for an error raised while serving; anything unforeseen is a 500 without details."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, BadBody):
        return ApiError(400, str(error), "invalid_request_error", error.code, error.param)
    if isinstance(error, BudgetExceeded):
        return ApiError(429, f"budget exhausted: {error}", "insufficient_quota", "budget_exceeded",
                        headers=dict(NO_RETRY))
    if isinstance(error, RateLimited) and error.retry_after is None:  # a quota used up for its period
        return ApiError(429, f"quota used up: {error}", "insufficient_quota", "quota_exceeded",
                        headers=dict(NO_RETRY))
    if isinstance(error, RateLimited):
        return ApiError(429, f"rate limit reached: {error}", "rate_limit_error", "rate_limit_exceeded",
                        headers=_retry_headers(error.retry_after))
    if isinstance(error, RouteDeferred):
        return ApiError(429, str(error), "insufficient_quota", "deferred", headers=dict(NO_RETRY))
    if isinstance(error, RequestTooLarge):
        return ApiError(400, str(error), "invalid_request_error", "context_length_exceeded", "messages")
    if isinstance(error, UnknownModel):
        return ApiError(404, f"the model {error.model!r} does not exist on this server; GET /v1/models lists "
                             "the models your key may use", "invalid_request_error", "model_not_found", "model")
    if isinstance(error, UnpricedModel):
        return ApiError(400, str(error), "invalid_request_error", "model_not_priced", "model")
    if isinstance(error, KeyNotFound):
        return ApiError(404, str(error), "invalid_request_error", "key_not_found")
    if isinstance(error, CatalogError | ConfigError):
        return ApiError(400, str(error), "invalid_request_error", "invalid_value")
    if isinstance(error, ProviderError):
        return _upstream(error)
    if isinstance(error, EngineError):
        return ApiError(502, f"the local engine failed: {error}", "server_error", "engine_error")
    if isinstance(error, RoutingError):
        return ApiError(503, str(error), "server_error", "no_model_available")
    if isinstance(error, LedgerUnavailable):
        return ApiError(503, "the ledger database is unreachable; nothing was charged, retry shortly",
                        "server_error", "ledger_unavailable", headers=_retry_headers(1.0))
    if isinstance(error, ContentmillError):
        return ApiError(500, f"the server could not complete the request: {type(error).__name__}",
                        "server_error", "internal_error")
    return ApiError(500, "internal error; the server logged it with this request's id", "server_error",
                    "internal_error")


def _upstream(error: ProviderError) -> ApiError:
    where = f"{error.model or 'the model'}"
    if isinstance(error, BadRequest):
        return ApiError(400, f"{where} refused the request: {error}", "invalid_request_error",
                        "upstream_bad_request")
    if isinstance(error, ProviderRateLimited):
        return ApiError(503, f"{where} is rate limited upstream after retries and fallbacks",
                        "server_error", "upstream_rate_limited", headers=_retry_headers(error.retry_after or 1.0))
    if isinstance(error, ProviderTimeout):
        return ApiError(504, f"{where} did not answer in time after retries and fallbacks", "server_error",
                        "upstream_timeout")
    if isinstance(error, AuthenticationError):
        return ApiError(502, f"{where} refused the server's own credentials; the operator must fix them",
                        "server_error", "upstream_error")
    return ApiError(502, f"{where} failed after retries and fallbacks ({type(error).__name__})", "server_error",
                    "upstream_error")

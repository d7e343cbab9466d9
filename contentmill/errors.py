"""The one error tree of contentmill.

Every error a user can see is one of these; each message says what to fix::

    ContentmillError
    ├── ConfigError                  a setting is missing or wrong
    │   ├── MissingCredential        an API key is not set (names the variable to set)
    │   └── ObjectStoreError         the S3 bucket is missing, refuses the credentials or cannot be reached
    ├── CatalogError
    │   ├── UnknownModel             "provider:model" is not in the catalog or names no provider
    │   └── UnpricedModel            the model has no price: refused rather than billed at 0
    ├── GatewayError                 refused before any provider was called
    │   ├── RateLimited              no capacity now (retry_after seconds)
    │   ├── BudgetExceeded           a hard budget would be overshot
    │   ├── RequestTooLarge          input + max output exceed the model's context window
    │   ├── AdmissionUnavailable     the store of limits and budgets (Redis) cannot be reached: nothing was called
    │   └── RouteDeferred            budget pressure defers low-priority work for now (its decision says why)
    ├── ProviderError                the provider was called and failed (status, request_id kept)
    │   ├── AuthenticationError      401/403: wrong or revoked key; never retried
    │   ├── BadRequest               400/404/422: the request itself is wrong; never retried
    │   ├── ProviderRateLimited      429 from the provider (retry_after from Retry-After)
    │   ├── ProviderUnavailable      5xx or connection failure
    │   ├── ProviderTimeout          no answer in time
    │   ├── MalformedResponse        the answer could not be read
    │   │   └── UnusableAnswer       read, with the usage it bills, but no usable content: billed, never retried
    │   └── EngineCrashed            a local engine's process died mid-call (the signal is named); restarted next call
    ├── InvalidRequest               a parameter of a request is out of its range or malformed (names it and its limit)
    ├── RoutingError                 no candidate model can take the work (none usable, none meets a quality floor)
    ├── EngineError                  a local engine (llama.cpp, espeak-ng, ffmpeg) failed
    ├── TemplateError                a prompt template cannot be loaded or rendered
    │   └── TemplateVariableError    a variable is missing, unknown or of the wrong type (names it)
    ├── QualityError                 a quality score cannot be computed (e.g. a judge's unreadable answer)
    ├── ExperimentError              an A/B experiment cannot be started, read, stopped or promoted
    ├── GraphError                   the knowledge graph cannot store, read or answer what was asked
    │   └── GraphUnavailable         its database is unreachable or busy; may succeed later
    └── LedgerError                  the ledger cannot store or read what was asked
        ├── UnsafeTag                a tag looks like a credential: refused, never stored
        ├── LedgerUnavailable        the database is unreachable or busy; may succeed later
        └── CostNotRecorded          calls were paid whose cost neither the ledger nor its spool could keep
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for annotations only: metering imports this module
    from contentmill.metering import ReportedUsage


class ContentmillError(Exception):
    """Base of every contentmill error."""


class ConfigError(ContentmillError):
    """A setting is missing or has a value that cannot be used."""


class MissingCredential(ConfigError):
    """An API key is needed and not set."""

    def __init__(self, variable: str, purpose: str) -> None:
        self.variable = variable
        super().__init__(f"{purpose} needs an API key: set the environment variable {variable}")


class ObjectStoreError(ConfigError):
    """The object store (an S3 bucket) refused or could not be reached; the message names what to fix."""


class CatalogError(ContentmillError):
    """The model catalog cannot answer for a model."""


class UnknownModel(CatalogError):
    def __init__(self, model: str, known: list[str] | None = None) -> None:
        self.model = model
        hint = ""
        if known:
            hint = f"; known models: {', '.join(sorted(known)[:12])}" + (" ..." if len(known) > 12 else "")
        super().__init__(
            f"unknown model {model!r}: name it as 'provider:model' and add it to your catalog file "
            f"(CONTENTMILL_CATALOG_FILE){hint}"
        )


class UnpricedModel(CatalogError):
    def __init__(self, model: str, missing: str) -> None:
        self.model = model
        super().__init__(
            f"model {model!r} has no {missing} price, so its cost cannot be known: give its price in your "
            f"catalog file (CONTENTMILL_CATALOG_FILE) or mark it 'free: true' if it really costs nothing"
        )


class GatewayError(ContentmillError):
    """The gateway refused the call before any provider was paid."""


class AdmissionUnavailable(GatewayError):
    """Limits and budgets cannot be checked because their store is unreachable; the call was not made."""


class RateLimited(GatewayError):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class BudgetExceeded(GatewayError):
    def __init__(self, budget: str, spent: float, reserved: float, limit: float, requested: float) -> None:
        self.budget, self.spent, self.reserved, self.limit = budget, spent, reserved, limit
        self.requested = requested
        super().__init__(
            f"budget {budget} would be exceeded: spent {spent:.6f} USD, reserved {reserved:.6f} USD, "
            f"this call needs up to {requested:.6f} USD, limit {limit:.6f} USD"
        )


class RequestTooLarge(GatewayError):
    def __init__(self, model: str, input_tokens: int, max_tokens: int, context_window: int) -> None:
        self.model = model
        super().__init__(
            f"{model}: {input_tokens} input tokens + max_tokens {max_tokens} exceed its context window of "
            f"{context_window} tokens; shorten the input or lower max_tokens"
        )


class RouteDeferred(GatewayError):
    """Budget pressure defers this work for now; ``decision`` is the recorded routing decision."""

    def __init__(self, message: str, decision: object = None) -> None:
        self.decision = decision
        super().__init__(message)


class InvalidRequest(ContentmillError, ValueError):
    """A parameter of a request (a video's topic, length, voice ...) is out of its range or malformed; the message
    names the parameter and what it may be."""


class RoutingError(ContentmillError):
    """The router has no model to offer: every candidate is unusable, or none meets the quality floor."""


class ProviderError(ContentmillError):
    """A provider was called and did not give a usable answer."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        model: str = "",
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.provider, self.model, self.status = provider, model, status
        self.request_id, self.retry_after = request_id, retry_after
        where = f"{model or provider}" + (f" (HTTP {status})" if status else "")
        tail = f" [request id {request_id}]" if request_id else ""
        super().__init__(f"{where}: {message}{tail}" if where else message + tail)


class AuthenticationError(ProviderError):
    pass


class BadRequest(ProviderError):
    pass


class ProviderRateLimited(ProviderError):
    retryable = True


class ProviderUnavailable(ProviderError):
    retryable = True


class ProviderTimeout(ProviderError):
    retryable = True


class MalformedResponse(ProviderError):
    retryable = True


class UnusableAnswer(MalformedResponse):
    """The vendor answered and reported the usage it bills, but the content cannot be used. The usage is billed
    (``reported``); the call is not retried, since a retry would be paid for again."""

    retryable = False

    def __init__(self, message: str, reported: ReportedUsage, *, provider: str = "", model: str = "",
                 request_id: str | None = None) -> None:
        self.reported = reported
        super().__init__(message, provider=provider, model=model, request_id=request_id)


class EngineCrashed(ProviderError):
    """A local engine's own process died (a fault in a native kernel, killed for memory). Nothing of the call was
    delivered; the next call starts a fresh process, so a retry may succeed where the fault was passing."""

    retryable = True


class EngineError(ContentmillError):
    """A local engine failed or is not installed."""


class LedgerError(ContentmillError):
    """The ledger cannot store or read what was asked (database unreachable, bad record, unknown id)."""


class UnsafeTag(LedgerError, ValueError):
    """A tag looks like a credential; ledger rows are readable by anyone, so it is refused."""


class LedgerUnavailable(LedgerError):
    """The database could not be reached or was busy; the same call may succeed later."""


class CostNotRecorded(LedgerError):
    """Calls were paid and their records reached neither the ledger database nor the spool in the data directory."""


class TemplateError(ContentmillError):
    """A prompt template cannot be found, loaded or rendered."""


class TemplateVariableError(TemplateError, ValueError):
    """A template variable is missing, unknown or of the wrong type; ``variable`` names it."""

    def __init__(self, template: str, variable: str, problem: str) -> None:
        self.template, self.variable = template, variable
        super().__init__(f"template {template}: variable {variable!r} {problem}")


class QualityError(ContentmillError):
    """A quality score cannot be computed (an unreadable judge answer, a missing reference)."""


class ExperimentError(ContentmillError):
    """An A/B experiment cannot be started, read, stopped or promoted as asked."""


class GraphError(ContentmillError):
    """The knowledge graph cannot store, read or answer what was asked (bad URL, unknown node, bad input)."""


class GraphUnavailable(GraphError):
    """The graph's database could not be reached or was busy; the same call may succeed later."""

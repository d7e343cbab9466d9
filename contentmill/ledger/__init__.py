"""The ledger: every model call's cost by tag, reports, anomalies, alerts and budget forecasts.

The gateway records each call as a ``CallRecord`` through a ``LedgerWriter`` (batched, off the hot path)
into a ``LedgerStore`` (SQLite embedded, PostgreSQL with the services profile), keeps what the database refuses
in a ``LedgerSpool`` of the data directory until it can be written, and lets an ``AlertEngine`` watch records
and the ledger. Money held for calls in flight is the gateway's admission's (``contentmill.gateway.admission``).
"""

from contentmill.errors import CostNotRecorded, LedgerError, LedgerUnavailable, UnsafeTag
from contentmill.ledger.alerts import AlertEngine
from contentmill.ledger.anomaly import Anomaly, AnomalyConfig, detect, scan
from contentmill.ledger.forecast import Forecast, forecast_budget, forecast_budgets, period_bounds, project
from contentmill.ledger.records import (
    Alert,
    Budget,
    CallRecord,
    check_tags,
)
from contentmill.ledger.report import Report, report
from contentmill.ledger.rules import (
    BudgetUsed,
    ErrorRate,
    ForecastOverBudget,
    LargeGeneration,
    ModelUnpriced,
    PeriodicRule,
    RecordRule,
    SpendAnomaly,
    UsageRejected,
    default_rules,
)
from contentmill.ledger.sinks import AlertSink, LogSink, PrefectArtifactSink, WebhookSink
from contentmill.ledger.spool import LedgerSpool
from contentmill.ledger.store import LedgerStore, settings_url
from contentmill.ledger.writer import LedgerWriter

__all__ = [
    "Alert", "AlertEngine", "AlertSink", "Anomaly", "AnomalyConfig", "Budget", "BudgetUsed", "CallRecord",
    "CostNotRecorded", "ErrorRate", "Forecast", "ForecastOverBudget", "LargeGeneration", "LedgerError",
    "LedgerSpool", "LedgerStore", "LedgerUnavailable", "LedgerWriter", "LogSink", "ModelUnpriced", "PeriodicRule",
    "PrefectArtifactSink",
    "RecordRule", "Report", "SpendAnomaly", "UnsafeTag", "UsageRejected",
    "WebhookSink",
    "check_tags", "default_rules", "detect", "forecast_budget", "forecast_budgets", "period_bounds", "project",
    "report", "scan",
    "settings_url",
]

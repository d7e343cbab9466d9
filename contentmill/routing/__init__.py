"""Model routing: tier rules fix the candidates, a five-dimension selection matrix ranks them from live ledger
statistics blended with catalog priors, health removes models in cooldown, and budget pressure moves low-priority
work to cheaper tiers. Every decision is recorded with each candidate's per-dimension contribution.

Public API::

    from contentmill.routing import Router, load_routing_config

    router = Router.for_gateway(gateway, load_routing_config(settings.routing_file))   # catalog, ledger, health
    router.refresh()                                   # read live statistics (also done when stale by generate)
    decision = router.choose("product_description", "en", tier="standard", priority="low", tags={"team": "shop"})
    decision.model, decision.fallbacks, decision.candidates, decision.reason, decision.downgraded_from
    gen, decision = await router.generate(gateway, request, task_kind=..., tier=..., priority=..., tags=...)
    router.record(decision, link=gen.request_id)       # generate() records by itself (batched: see flush/close)
    router.close()                                     # or ``with Router(...) as router``: writes queued decisions
    router.rank(models, task_kind=..., language=..., weights={"quality": 1})     # ranking only
    choice = router.quality_floor(0.8, confidence=0.95)   # cheapest model meeting a quality floor, with the saving

- ``choose`` raises ``RouteDeferred`` (a GatewayError) when the degradation policy defers the priority, and
  ``RoutingError`` when no model of the tier can be called.
- Weights: ``Weights(quality=0.30, latency=0.20, cost=0.25, stability=0.15, coverage=0.10)`` by default; any
  non-negative values, normalized to sum 1; per call as ``weights={...}`` (left-out dimensions weigh 0).
- Scores (``routing.matrix``) and the prior/live blend (``routing.stats``) are stated in those modules;
  the quality floor's confidence bound in ``routing.floor``; decision rows in ``routing.store``. Quality scores
  are read from the ledger's ``quality_scores`` table, whoever wrote them (the scorers in ``contentmill.quality``).
"""

from contentmill.routing.config import (
    DIMENSIONS,
    PRIORITIES,
    DegradationStep,
    RoutingConfig,
    Weights,
    load_routing_config,
)
from contentmill.routing.floor import FloorChoice, cheapest_meeting_floor
from contentmill.routing.matrix import Candidate, SelectionMatrix, rank
from contentmill.routing.router import BudgetPressure, RouteDecision, Router
from contentmill.routing.stats import Blended, LiveStats, QualityStats, read_live_stats, read_quality
from contentmill.routing.store import find_decision

__all__ = [
    "DIMENSIONS", "PRIORITIES", "Blended", "BudgetPressure", "Candidate", "DegradationStep", "FloorChoice",
    "LiveStats", "QualityStats", "RouteDecision", "Router", "RoutingConfig", "SelectionMatrix",
    "Weights", "cheapest_meeting_floor", "find_decision", "load_routing_config", "rank", "read_live_stats",
    "read_quality",
]

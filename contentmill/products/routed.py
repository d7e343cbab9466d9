"""Product tiers routed: each tier's model and fallbacks chosen by the router from its tier of the same name.

With ``route_tiers`` on, a run asks the router once per tier when it starts (the tier's candidates ranked by the
selection matrix on live ledger statistics, models in cooldown left out) and records each decision, so
``contentmill route explain DECISION_ID`` says why the tier's products went to that model. The words limits of
each tier stay the products config's.
"""

from __future__ import annotations

from collections.abc import Mapping

from contentmill.gateway import Gateway
from contentmill.products.config import ProductsConfig
from contentmill.routing import Router, load_routing_config
from contentmill.settings import Settings

TASK_KIND = "product_description"


def routed_config(gateway: Gateway, settings: Settings, config: ProductsConfig, tags: Mapping[str, str]
                  ) -> tuple[ProductsConfig, dict[str, str]]:
    """The config with routed tiers, and the decision id of each tier (the config as it is when not routed)."""
    if not config.route_tiers:
        return config, {}
    tiers = dict(config.tiers)
    routes: dict[str, str] = {}
    with Router.for_gateway(gateway, load_routing_config(settings.routing_file)) as router:
        router.refresh()
        for tier, models in config.tiers.items():
            decision = router.choose(TASK_KIND, config.language, tier=tier, tags=tags)
            router.record(decision, link=decision.id)
            tiers[tier] = models.model_copy(update={"model": decision.model, "fallbacks": tuple(decision.fallbacks)})
            routes[tier] = decision.id
    return config.model_copy(update={"tiers": tiers}), routes

"""Constants and builders shared by the tuner's tests (test modules import them from here, not from conftest)."""

from __future__ import annotations

import os

from contentmill.settings import Settings

KEY = "sk-tuning-0000000000000000"
# model-b writes answers 1.5 times as long and answers 30 ms later; model-c half as long, fastest.
PROFILES = ["model-a=10:1.0", "model-b=40:1.5", "model-c=0:0.5"]
PRICES = {
    "openai:model-a": {"input_per_mtok": 0.50, "output_per_mtok": 1.50},
    "openai:model-b": {"input_per_mtok": 0.15, "output_per_mtok": 0.60},
    "openai:model-c": {"input_per_mtok": 2.50, "output_per_mtok": 10.00},
}


def cli_env(settings: Settings) -> dict[str, str]:
    """The environment a CLI subprocess needs to see the same settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTENTMILL_", "OPENAI_"))}
    env.update({
        "OPENAI_BASE_URL": settings.openai_base_url or "", "OPENAI_API_KEY": KEY,
        "CONTENTMILL_DATA_DIR": str(settings.data_dir), "CONTENTMILL_CATALOG_FILE": str(settings.catalog_file),
        "CONTENTMILL_TEMPLATE_DIRS": os.pathsep.join(str(p) for p in settings.template_dirs),
        "CONTENTMILL_MONITOR_INTERVAL_S": "0",
    })
    return env

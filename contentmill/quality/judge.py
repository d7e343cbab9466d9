"""An LLM judge: a model grades the answer from 0 to 10 through the gateway, so its call is admitted, priced
and recorded in the ledger like any other (tagged ``purpose=quality-judge``).

The prompt is the packaged ``quality_judge`` template; the reply must hold JSON with a numeric ``score``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from contentmill.errors import QualityError
from contentmill.gateway import Gateway
from contentmill.prompts.library import TemplateLibrary
from contentmill.prompts.template import PromptTemplate
from contentmill.quality.base import Sample, Score

JUDGE_TEMPLATE = "quality_judge"
_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def parse_judge_score(text: str) -> float:
    """The 0-10 ``score`` of a judge's JSON reply as a share in [0, 1], or a QualityError saying what was wrong."""
    match = _OBJECT.search(text or "")
    try:
        data = json.loads(match.group()) if match else None
    except ValueError:
        data = None
    value = data.get("score") if isinstance(data, dict) else None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            value = None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 10:
        raise QualityError(f"the judge's answer holds no score from 0 to 10 as JSON: {text[:120]!r}")
    return float(value) / 10.0


class JudgeScorer:
    """Asks ``model`` to grade each sample; ``tags`` go on the judge's own ledger rows."""

    name = "judge"

    def __init__(self, gateway: Gateway, model: str, *, template: PromptTemplate | None = None,
                 tags: Mapping[str, str] | None = None) -> None:
        self.gateway = gateway
        self.model = model
        self.template = template or TemplateLibrary.from_settings(gateway.settings).get(JUDGE_TEMPLATE)
        self.tags = {"purpose": "quality-judge", **(tags or {})}

    async def score(self, sample: Sample) -> Score:
        values: dict[str, Any] = {"task": sample.task or "(not given)", "answer": sample.output}
        if sample.reference:
            values["reference"] = sample.reference
        gen = await self.gateway.generate(self.template.render(values), model=self.model, tags=self.tags,
                                          template_version=self.template.spec)
        value = parse_judge_score(gen.text or "")
        return Score(self.name, value, {"model": self.model, "cost_usd": gen.cost_usd})

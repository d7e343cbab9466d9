"""What a finished run tells people: the cost table, a markdown summary and a link to the video.

Plain data, no Prefect: the flow turns these into artifacts, the CLI into its table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contentmill.video.pipeline import VideoResult


def link(location: str) -> str:
    """A clickable link: URLs as they are, file paths as file:// URLs."""
    if "://" in location:
        return location
    return Path(location).resolve().as_uri()


def cost_rows(result: VideoResult) -> list[dict[str, Any]]:
    """One row per step: model, calls, usage, cost now, cost saved by reuse, wall time."""
    return [
        {
            "step": name,
            "model": report.model or "-",
            "calls": report.calls,
            "usage": report.usage_text(),
            "cost_usd": round(report.cost_usd, 6),
            "cached": report.cached,
            "saved_usd": round(report.saved_usd, 6),
            "seconds": round(report.seconds, 2),
        }
        for name, report in result.steps.items()
    ]


def summary_markdown(result: VideoResult) -> str:
    rows = "\n".join(
        f"| {row['step']} | {row['model']} | {row['usage']} | {row['cost_usd']:.6f} | "
        f"{'reused' if row['cached'] else 'made'} |"
        for row in cost_rows(result)
    )
    return (
        f"# {result.title}\n\n"
        f"{result.duration_s:.1f} s, {result.width}x{result.height}, {result.language}, "
        f"topic: {result.topic}\n\n"
        f"- [video]({link(result.video)})\n- [subtitles]({link(result.srt)})\n"
        f"- [script]({link(result.script)})\n"
        f"- folder: `{result.folder}` in `{result.store}`\n\n"
        "| step | model | usage | cost (USD) | result |\n| --- | --- | --- | ---: | --- |\n"
        f"{rows}\n\n"
        f"**Cost of this run: {result.cost_usd:.6f} USD**; reuse of stored results saved "
        f"{result.saved_usd:.6f} USD.\n"
    )


def failure_markdown(topic: str, step: str, error: BaseException, done: list[str]) -> str:
    finished = ", ".join(done) or "none"
    return (
        f"# Creator video failed at the {step} step\n\n"
        f"Topic: {topic}\n\n**{type(error).__name__}**: {error}\n\n"
        f"Steps finished and stored: {finished}. Run the flow again with the same parameters once the cause "
        "is fixed: it resumes after the last good step without paying for the earlier ones again.\n"
    )

"""What a finished run tells people: the cost table, a markdown summary and a link to the video.

Plain data, no Prefect: the flow turns these into artifacts, the CLI into its table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from contentmill.video.pipeline import VideoResult

MEDIA_ROUTE = "/media/"  # where contentmill serve hands out the store's published files (server/web/media.py)


def media_path(key: str) -> str:
    """The path of a stored object on the server, e.g. ``/media/videos/octopuses-0123/video.mp4``."""
    return MEDIA_ROUTE + quote(key)


def link(location: str, key: str | None = None, public_url: str | None = None) -> str:
    """A clickable link: URLs (presigned S3) as they are; a local store's file through the server at
    ``public_url`` (CONTENTMILL_PUBLIC_URL) when one is known and its ``key`` given; else a file:// URL."""
    if "://" in location:
        return location
    if public_url and key:
        return public_url.rstrip("/") + media_path(key)
    return Path(location).resolve().as_uri()


def result_links(result: VideoResult, public_url: str | None) -> dict[str, str]:
    """Links to the video, its subtitles and its script (see :func:`link`)."""
    return {
        "video": link(result.video, f"{result.folder}video.mp4", public_url),
        "subtitles": link(result.srt, f"{result.folder}subtitles.srt", public_url),
        "script": link(result.script, f"{result.folder}script.json", public_url),
    }


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


DRAFT_NOTE = ("draft: the small local model wrote this script from the topic alone, so its facts may be wrong; "
              "check them, or give notes to draw from (--source) or your own script (--script)")


def summary_markdown(result: VideoResult, public_url: str | None = None) -> str:
    links = result_links(result, public_url)
    rows = "\n".join(
        f"| {row['step']} | {row['model']} | {row['usage']} | {row['cost_usd']:.6f} | "
        f"{'reused' if row['cached'] else 'made'} |"
        for row in cost_rows(result)
    )
    draft = f"> **{DRAFT_NOTE}**\n\n" if result.draft else ""
    return (
        f"# {result.title}{' (draft)' if result.draft else ''}\n\n{draft}"
        f"{result.duration_s:.1f} s, {result.width}x{result.height}, {result.language}, "
        f"topic: {result.topic}\n\n"
        f"- [video]({links['video']})\n- [subtitles]({links['subtitles']})\n"
        f"- [script]({links['script']})\n"
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

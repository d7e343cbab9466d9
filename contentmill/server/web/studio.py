"""The studio at ``/studio``: a creator's key makes a video from a topic and watches it (docs/web.md).

The form offers what the flow takes (topic, language, length, voice, orientation, captions, the text and speech models
from the catalog that the key may use, a voice sample to hear); ``POST /studio/runs`` starts the creator video
(studio_runner.py in this process, or the Prefect deployment when one is configured) and answers its id;
``GET /studio/runs/<id>`` is its progress, step by step with each step's cost, and once done its files under
``/media/`` (media.py). ``POST /studio/runs/<id>/edit`` gives a scene new narration and renders again: only that
scene is spoken again; ``POST /studio/runs/<id>/again`` starts an interrupted or failed run again, paying only
for the steps it had not stored. Runs are rows of the ledger database (studio_runs.py), so any worker answers for
them; a deployment's runs are brought up to date from Prefect and the ledger when read (studio_prefect.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from contentmill.errors import ConfigError, InvalidRequest
from contentmill.ids import new_id
from contentmill.providers.resolve import configured
from contentmill.requests import SpeechRequest
from contentmill.server.errors import ApiError
from contentmill.server.http import Answer, Request, json_answer
from contentmill.server.keys import VirtualKey
from contentmill.server.protocol import BadBody, parse_json
from contentmill.server.web.media import Media
from contentmill.server.web.site import ANYONE_SIGNED_IN, Role, Viewer, Web, query
from contentmill.server.web.studio_prefect import RUN_TAG, DeploymentRuns, start_deployment
from contentmill.server.web.studio_runner import StudioRunner
from contentmill.server.web.studio_runs import StudioRun, StudioRuns
from contentmill.storage import ObjectStore, open_store
from contentmill.video.request import VideoRequest
from contentmill.video.summary import media_path

if TYPE_CHECKING:
    from contentmill.server.app import Server

# Keys that may call models; a read-only key or the admin has no team to make videos for.
CREATORS: tuple[Role, ...] = ("api",)
FORM_FIELDS = ("topic", "language", "seconds", "voice", "orientation", "resolution", "captions", "style",
               "text_model", "speech_model")
LANGUAGES = {"en": "English", "zh": "Chinese"}
SAMPLE_TEXT = {"en": "Hello! This is the voice that will read your video.", "zh": "你好！这是为你的视频配音的声音。"}
JOB_TAG = "studio"


@dataclass(frozen=True, slots=True)
class Choices:
    """What the form offers a key: the models it may use (the configured default first) and their voices."""

    text_models: tuple[str, ...]
    speech_models: tuple[str, ...]
    voices: dict[str, tuple[str, ...]]

    def as_dict(self) -> dict[str, Any]:
        return {"text_models": self.text_models, "speech_models": self.speech_models, "voices": self.voices,
                "languages": LANGUAGES}


@dataclass(frozen=True, slots=True)
class _Parts:
    runs: StudioRuns
    store: ObjectStore
    media: Media
    runner: StudioRunner
    deployed: DeploymentRuns


class Studio:
    """The studio's state on one server: its runs, the store its videos are in, the runner; made on first use
    (the gateway exists only once the server has started)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.deployment = server.settings.studio_deployment
        self._ready: _Parts | None = None

    @property
    def parts(self) -> _Parts:
        if self._ready is None:
            gateway = self.server.gateway
            assert gateway is not None, "the server has not started"
            runs = StudioRuns(gateway.store)
            store = open_store(self.server.settings)
            media = Media(store, lambda folder, team: _may_see(runs, store, folder, team))
            runner = StudioRunner(self.server.settings, gateway, store, runs)
            self._ready = _Parts(runs, store, media, runner, DeploymentRuns(runs, store))
        return self._ready

    # -- what a key may choose -------------------------------------------------------------------------------

    def choices(self, key: VirtualKey) -> Choices:
        gateway, settings = self.server.gateway, self.server.settings
        assert gateway is not None
        catalog = gateway.catalog

        def offered(modality: str, default: str) -> tuple[str, ...]:
            names = [n for n, info in catalog.models.items() if info.modality == modality
                     and (info.provider != "fake" or n == default) and configured(n, settings, catalog)
                     and self.server.allowed(key, n)]
            return tuple(sorted(names, key=lambda n: (n != default, n)))

        speech = offered("speech", settings.speech_model)
        voices = {name: catalog.get(name).voices or ("default",) for name in speech}
        return Choices(offered("text", settings.text_model), speech, voices)

    def request_of(self, fields: dict[str, Any], key: VirtualKey, choices: Choices) -> VideoRequest:
        """The video a form asks for, checked: a one-line 400 says what to fix, a model the key may not use (the
        server's default included, when the form leaves one empty) a 403."""
        unknown = sorted(set(fields) - set(FORM_FIELDS))
        if unknown:
            raise BadBody(f"unknown field {unknown[0]!r}; the form has {', '.join(FORM_FIELDS)}", unknown[0])
        values = self.allowed_models({k: v for k, v in fields.items() if v not in (None, "")}, key, choices)
        for name in ("seconds", "resolution"):
            if isinstance(values.get(name), str) and values[name].isdigit():
                values[name] = int(values[name])
        try:
            return VideoRequest.checked(**values, tags={**key.tags(), "job": JOB_TAG})
        except InvalidRequest as exc:
            raise BadBody(str(exc)) from None

    def allowed_models(self, values: dict[str, Any], key: VirtualKey, choices: Choices) -> dict[str, Any]:
        """``values`` with the text and speech models filled in (an empty one is the server's default), or a 403
        for a model the key may not use, the server's image model (CONTENTMILL_IMAGE_MODEL) included."""
        settings = self.server.settings
        values = dict(values)
        for name, offered, default in (("text_model", choices.text_models, settings.text_model),
                                       ("speech_model", choices.speech_models, settings.speech_model)):
            values[name] = values.get(name) or default
            if values[name] not in offered:
                raise ApiError(403, f"this key may not use {values[name]!r} as the {name.replace('_', ' ')}; "
                                    f"choose one of {', '.join(offered) or 'none'}", "permission_error",
                               "model_not_allowed", name)
        image = values.get("image_model") or settings.image_model
        if image and not self.server.allowed(key, image):
            raise ApiError(403, f"this key may not use the image model {image!r} (CONTENTMILL_IMAGE_MODEL): ask an "
                                "operator to allow it", "permission_error", "model_not_allowed", "image_model")
        return values

    # -- pages and answers -----------------------------------------------------------------------------------

    def view(self, run: StudioRun) -> dict[str, Any]:
        """A run as the page shows it; its files as this server's media paths."""
        request = {k: v for k, v in run.request.items() if k in FORM_FIELDS or k == "scene_edits"}
        files = run.files or {}
        media: dict[str, Any] = {name: media_path(key) for name, key in files.items() if isinstance(key, str)}
        if files.get("audio"):
            media["audio"] = [media_path(key) for key in files["audio"]]
        return {"id": run.id, "state": run.shown_state, "topic": run.topic, "title": run.title,
                "created_at": run.created_at.isoformat(), "steps": run.steps, "cost_usd": run.cost_usd,
                "saved_usd": run.saved_usd, "duration_s": run.duration_s, "error": run.error, "request": request,
                "media": media}

    async def start(self, key: VirtualKey, request: VideoRequest) -> StudioRun:
        """Record the run and set it going (a deployment's flow run, or a task of this process); it goes on
        whether or not the page that asked stays. Every call it makes carries the run's id as a tag."""
        run_id = new_id()
        request = request.model_copy(update={"tags": {**request.tags, RUN_TAG: run_id}})
        asked = request.model_dump(mode="json")
        try:
            flow_run_id = await start_deployment(self.deployment, request, run_id) if self.deployment else None
        except ConfigError as exc:  # the server's set-up, not the creator's input: nothing was started or paid
            raise ApiError(503, str(exc), "server_error", "deployment_unavailable") from None
        run = await asyncio.to_thread(self.parts.runs.create, key.team, key.id, asked, run_id, flow_run_id)
        if flow_run_id is None:
            self.parts.runner.start(run, request, self.server.limits(key))
        return run

    async def run_of(self, run_id: str, key: VirtualKey) -> StudioRun:
        run = await asyncio.to_thread(self.parts.runs.get, run_id, key.team)
        if run is None:
            raise ApiError(404, f"no studio run {run_id!r} of your team", "invalid_request_error", "not_found")
        return await self.parts.deployed.fresh(run)

    async def recent(self, key: VirtualKey) -> list[StudioRun]:
        runs = await asyncio.to_thread(self.parts.runs.recent, key.team)
        return [await self.parts.deployed.fresh(run) for run in runs]

    async def again(self, run: StudioRun, key: VirtualKey, edits: dict[str, Any] | None = None) -> StudioRun:
        """The same video asked again, with new narration for some scenes: what is stored is reused, so only what
        changed (or what an interrupted run had not finished) is paid for. The key asking must be allowed the
        run's models (a teammate's key may be allowed fewer), and the run must have ended."""
        if run.shown_state in ("queued", "running", "paused"):
            raise BadBody("this run is still going: wait for it to end, or follow it", "run")
        asked = self.allowed_models({**run.request, "tags": {**key.tags(), "job": JOB_TAG}}, key, self.choices(key))
        if edits:
            asked["scene_edits"] = {**(asked.get("scene_edits") or {}), **edits}
        try:
            request = VideoRequest.checked(**asked)
        except InvalidRequest as exc:
            raise BadBody(str(exc), "scene_edits") from None
        return await self.start(key, request)

    async def edit(self, run: StudioRun, body: dict[str, Any], key: VirtualKey) -> StudioRun:
        """A new run of the same video with the scenes' new narration; the rest of the video is reused."""
        if run.shown_state != "done":
            raise BadBody("a scene can be edited once the video is done", "scene_edits")
        edits = body.get("scene_edits")
        if not isinstance(edits, dict) or not edits:
            raise BadBody("send {\"scene_edits\": {\"2\": \"new narration of scene 2\"}}", "scene_edits")
        return await self.again(run, key, edits)


def _may_see(runs: StudioRuns, store: ObjectStore, folder: str, team: str | None) -> bool:
    """Whether ``team`` (None: the admin) may see a published folder: a studio run of the team made it, or the
    folder's manifest carries the team's tag (a video made by the flow or the CLI with ``--tag team=...``)."""
    teams = runs.teams(folder)
    if team in teams or (team is None and teams):
        return True
    manifest = store.get_json(f"{folder}manifest.json")
    if not isinstance(manifest, dict):
        return False
    tags = (manifest.get("request") or {}).get("tags") or {}
    return team is None or tags.get("team") == team


def _key(viewer: Viewer | None) -> VirtualKey:
    assert viewer is not None and viewer.key is not None, "the route admits only keys"
    return viewer.key


def install(web: Web) -> None:
    studio = Studio(web.server)

    async def page(request: Request, viewer: Viewer | None) -> Answer:
        key = _key(viewer)
        choices = studio.choices(key)
        recent = await studio.recent(key)
        return web.render(request, viewer, "studio.html", choices=choices,
                          runs=[studio.view(run) for run in recent], first_voices=_first_voices(choices))

    async def voice(request: Request, viewer: Viewer | None) -> Answer:
        key = _key(viewer)
        asked = query(request)
        choices = studio.choices(key)
        model = asked.get("model") or (choices.speech_models[0] if choices.speech_models else "")
        if model not in choices.speech_models:
            raise ApiError(403, f"this key may not use {model!r}; choose one of {', '.join(choices.speech_models)}",
                           "permission_error", "model_not_allowed", "model")
        language = asked.get("language", "en")
        if language not in SAMPLE_TEXT:
            raise BadBody(f"language is one of {', '.join(SAMPLE_TEXT)} (got {language!r})", "language")
        voice_name = asked.get("voice") or "default"
        gateway = web.server.gateway
        assert gateway is not None
        gen = await gateway.speak(SpeechRequest(SAMPLE_TEXT[language], voice=voice_name, language=language),
                                  model=model, tags={**key.tags(), "job": JOB_TAG, "step": "voice-sample"},
                                  limits=web.server.limits(key))
        headers = ((b"cache-control", b"private, max-age=3600"),
                   (b"x-contentmill-cost-usd", f"{gen.cost_usd:.10f}".encode()))
        return Answer(200, gen.audio or b"", b"audio/wav", headers)

    async def runs_get(request: Request, viewer: Viewer | None) -> Answer:
        key = _key(viewer)
        rest = request.scope["path"].removeprefix("/studio/runs").strip("/")
        if not rest:
            recent = await studio.recent(key)
            return json_answer(200, {"object": "list", "data": [studio.view(run) for run in recent]})
        if "/" in rest:
            raise ApiError(404, f"{request.scope['path']} is not a page", "invalid_request_error", "not_found")
        return json_answer(200, studio.view(await studio.run_of(rest, key)), ((b"cache-control", b"no-store"),))

    async def runs_post(request: Request, viewer: Viewer | None) -> Answer:
        key = _key(viewer)
        rest = request.scope["path"].removeprefix("/studio/runs").strip("/")
        body = parse_json(await request.body())
        if not rest:
            run = await studio.start(key, studio.request_of(body, key, studio.choices(key)))
        else:
            run_id, _, action = rest.partition("/")
            if action not in ("edit", "again"):
                raise ApiError(404, f"{request.scope['path']} is not a page", "invalid_request_error", "not_found")
            earlier = await studio.run_of(run_id, key)
            run = await (studio.edit(earlier, body, key) if action == "edit" else studio.again(earlier, key))
        return json_answer(201, studio.view(run))

    async def media(request: Request, viewer: Viewer | None) -> Answer:
        assert viewer is not None
        team = None if viewer.key is None else viewer.key.team
        answer = await studio.parts.media.serve(request, team)
        return answer  # type: ignore[return-value]  # None: the file was streamed

    web.add("GET", "/studio", page, roles=CREATORS, nav="Studio")
    web.add("GET", "/studio/voice", voice, roles=CREATORS)
    web.add("GET", "/studio/runs", runs_get, roles=CREATORS, prefix=True)
    web.add("POST", "/studio/runs", runs_post, roles=CREATORS, prefix=True)
    web.add("GET", "/media", media, roles=ANYONE_SIGNED_IN, prefix=True)


def _first_voices(choices: Choices) -> tuple[str, ...]:
    """The voices of the speech model the form shows first (the page's script refills them on a change)."""
    return choices.voices.get(choices.speech_models[0], ()) if choices.speech_models else ()

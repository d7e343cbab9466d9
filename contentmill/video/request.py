"""What a creator asks for: one validated request that the flow, the CLI and the library pipeline share.

The annotated types below carry each parameter's constraints and description once; the Prefect flow's
signature uses the same types, so its typed UI form and this model cannot disagree.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import ErrorDetails

from contentmill.errors import InvalidRequest
from contentmill.media.music import check_music
from contentmill.settings import Settings

Language = Literal["en", "zh"]
Orientation = Literal["vertical", "landscape"]
Resolution = Literal[480, 720, 1080]
_MODEL_NAME = r"^[A-Za-z0-9_.\-]+:\S+$"

Topic = Annotated[str, Field(min_length=1, max_length=200, description="What the video is about.")]
Seconds = Annotated[int, Field(ge=10, le=180, description="Target length of the video in seconds.")]
Style = Annotated[str, Field(min_length=1, max_length=200, description="Tone of the script, e.g. 'playful'.")]
Voice = Annotated[
    str,
    Field(min_length=1, max_length=64, description="A voice of the speech engine ('default': by language)."),
]
ModelName = Annotated[
    str | None, Field(pattern=_MODEL_NAME, description="provider:model; empty: the CONTENTMILL_* setting.")
]
Fps = Annotated[int, Field(ge=10, le=60, description="Frames per second of the video.")]
Tags = Annotated[dict[str, str], Field(description="Cost tags such as team and project.")]
ReuseSimilar = Annotated[
    bool,
    Field(description="Serve a topic that means the same as an earlier one (same settings) from its stored video."),
]
SceneEdits = Annotated[
    dict[int, str],
    Field(description="Scene number (from 1) -> new narration for it; every other step result is reused."),
]
OwnScript = Annotated[
    str | None,
    Field(max_length=20_000, description="Your own narration, scenes split by blank lines: no text model is called."),
]
Source = Annotated[
    str | None,
    Field(max_length=100_000, description="Notes (text or markdown) the script must take its facts from."),
]
Review = Annotated[bool, Field(description="Pause after the script, so it can be read and edited before paying on.")]

ImageModelName = Annotated[
    str | None,
    Field(pattern=_MODEL_NAME, description="provider:model making each scene's picture, e.g. openai:gpt-image-1; "
          "empty: CONTENTMILL_IMAGE_MODEL, and without it an offline illustration per scene."),
]
Footage = Annotated[bool, Field(description="Stock footage found by each scene's words (CONTENTMILL_PEXELS_API_KEY).")]
CaptionStyle = Literal["plain", "karaoke"]
Captions = Annotated[
    CaptionStyle,
    Field(description="plain subtitles, or karaoke: each word lights up as it is said."),
]
Music = Annotated[
    str | None,
    Field(max_length=4096, description="An audio file (MP3, WAV, OGG, M4A) mixed under the narration, ducked while "
          "it speaks, looped or cut to the video's length."),
]

DEFAULT_STYLE = "friendly and clear"
# How a problem names each parameter, in the words of a person filling in the form.
_NOUNS = {
    "topic": "a topic", "language": "the language", "seconds": "the length in seconds", "style": "a style",
    "voice": "a voice name", "text_model": "the text model", "speech_model": "the speech model",
    "orientation": "the orientation", "resolution": "the resolution", "fps": "the frame rate", "tags": "a tag",
    "scene_edits": "a scene edit", "reuse_similar": "reuse_similar", "own_script": "your own script",
    "source": "the source notes", "review": "review", "image_model": "the image model", "footage": "footage",
    "captions": "captions", "music": "the music file",
}  # fmt: skip


def problem(error: ErrorDetails) -> str:
    """One validation error as a few words that say what to fix, e.g. "a topic is at most 200 characters"."""
    field = str(error["loc"][0]) if error["loc"] else "the request"
    noun, ctx, given = _NOUNS.get(field, field), error.get("ctx", {}), error.get("input")
    match error["type"]:
        case "string_too_long":
            return f"{noun} is at most {ctx['max_length']} characters (this one has {len(str(given))})"
        case "string_too_short":
            return f"{noun} must not be empty"
        case "greater_than_equal":
            return f"{noun} is at least {ctx['ge']} (got {given!r})"
        case "less_than_equal":
            return f"{noun} is at most {ctx['le']} (got {given!r})"
        case "literal_error":
            return f"{noun} is {ctx['expected']} (got {given!r})"
        case "string_pattern_mismatch":
            return f"{noun} is named as provider:model, e.g. openai:gpt-4o-mini (got {given!r})"
        case "extra_forbidden":
            return f"unknown parameter {field!r}: the parameters are {', '.join(_NOUNS)}"
        case "value_error":
            return str(ctx["error"])
    return f"{noun}: {error['msg']}"


class VideoRequest(BaseModel):
    """One creator video: what it is about and how it is made. Model names left empty come from settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    topic: Topic
    language: Language = "en"
    seconds: Seconds = 30
    style: Style = DEFAULT_STYLE
    voice: Voice = "default"
    text_model: ModelName = None
    speech_model: ModelName = None
    orientation: Orientation = "vertical"
    resolution: Resolution = 1080
    fps: Fps = 30
    tags: Tags = Field(default_factory=dict)
    scene_edits: SceneEdits = Field(default_factory=dict)
    reuse_similar: ReuseSimilar = True
    own_script: OwnScript = None
    source: Source = None
    review: Review = False
    image_model: ImageModelName = None
    footage: Footage = False
    captions: Captions = "plain"
    music: Music = None

    @classmethod
    def checked(cls, **fields: Any) -> VideoRequest:
        """The request, or InvalidRequest saying in one line what to fix (rather than pydantic's report)."""
        try:
            return cls(**fields)
        except ValidationError as exc:
            raise InvalidRequest("; ".join(problem(error) for error in exc.errors())) from None

    @field_validator("topic", "style")
    @classmethod
    def _one_line(cls, value: str, info: ValidationInfo) -> str:
        cleaned = " ".join(value.split())
        if not cleaned:
            raise ValueError(f"{_NOUNS[str(info.field_name)]} must not be blank")
        return cleaned

    @field_validator("scene_edits")
    @classmethod
    def _edits(cls, value: dict[int, str]) -> dict[int, str]:
        cleaned = {}
        for number, text in sorted(value.items()):
            if number < 1:
                raise ValueError(f"scenes are numbered from 1 (got {number})")
            narration = " ".join(text.split())
            if not narration:
                raise ValueError(f"the new narration of scene {number} is blank")
            cleaned[number] = narration
        return cleaned

    @field_validator("own_script", "source")
    @classmethod
    def _blank_is_none(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not value.strip():
            raise ValueError(f"{_NOUNS[str(info.field_name)]} is empty: give the file with the text in it")
        return value

    @field_validator("music")
    @classmethod
    def _music(cls, value: str | None) -> str | None:
        """The music file's absolute path, checked before anything is paid (InvalidRequest says what is wrong)."""
        return str(check_music(value).resolve()) if value and value.strip() else None

    @property
    def finish(self) -> dict[str, Any]:
        """The finishing options that are set (karaoke captions, music) and nothing for a request without them:
        what the addresses of a video add, so that the videos made before these options keep theirs."""
        return self.model_dump(include={"captions", "music"}, exclude_defaults=True)

    @property
    def as_asked(self) -> bool:
        """Written by the text model from the topic alone: what an earlier video of a similar topic can serve."""
        return not (self.scene_edits or self.own_script or self.source)

    @property
    def size(self) -> tuple[int, int]:
        """Frame width and height: the long side keeps 16:9, rounded to an even number for H.264."""
        short = self.resolution
        long = round(short * 16 / 9 / 2) * 2
        return (short, long) if self.orientation == "vertical" else (long, short)

    def with_models(self, settings: Settings) -> VideoRequest:
        """The request with both model names filled in, so step results are addressed by the real model."""
        return self.model_copy(
            update={
                "text_model": self.text_model or settings.text_model,
                "speech_model": self.speech_model or settings.speech_model,
                "image_model": self.image_model or settings.image_model,
            }
        )

    @property
    def text(self) -> str:
        """The text model's name (after :meth:`with_models`)."""
        if self.text_model is None:
            raise ValueError("the text model is not resolved: call with_models(settings) first")
        return self.text_model

    @property
    def speech(self) -> str:
        """The speech model's name (after :meth:`with_models`)."""
        if self.speech_model is None:
            raise ValueError("the speech model is not resolved: call with_models(settings) first")
        return self.speech_model

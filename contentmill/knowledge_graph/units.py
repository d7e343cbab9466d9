"""Quantities in free text, normalized so that equal amounts compare equal: ``0.5 l`` == ``500 ml``.

Each unit maps to a family and a factor to the family's base unit. Units whose size varies (months, years,
currencies) are families of their own and are never converted into one another.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# unit text (casefolded) -> (family, factor to the family's base unit)
_LATIN_UNITS: dict[str, tuple[str, float]] = {
    **dict.fromkeys(("ml", "milliliter", "milliliters", "millilitre", "millilitres"), ("l", 0.001)),
    "cl": ("l", 0.01), "dl": ("l", 0.1),
    **dict.fromkeys(("l", "liter", "liters", "litre", "litres", "ltr"), ("l", 1.0)),
    **dict.fromkeys(("fl oz", "fl. oz", "floz", "fl.oz"), ("l", 0.0295735)),
    **dict.fromkeys(("gallon", "gallons", "gal"), ("l", 3.78541)),
    "mg": ("kg", 1e-6),
    **dict.fromkeys(("g", "gram", "grams", "gramme", "grammes"), ("kg", 0.001)),
    **dict.fromkeys(("kg", "kgs", "kilogram", "kilograms", "kilo", "kilos"), ("kg", 1.0)),
    **dict.fromkeys(("lb", "lbs", "pound", "pounds"), ("kg", 0.45359237)),
    **dict.fromkeys(("oz", "ounce", "ounces"), ("kg", 0.028349523)),
    **dict.fromkeys(("mm", "millimeter", "millimeters", "millimetre", "millimetres"), ("m", 0.001)),
    **dict.fromkeys(("cm", "centimeter", "centimeters", "centimetre", "centimetres"), ("m", 0.01)),
    **dict.fromkeys(("m", "meter", "meters", "metre", "metres"), ("m", 1.0)),
    **dict.fromkeys(("km", "kilometer", "kilometers", "kilometre", "kilometres"), ("m", 1000.0)),
    **dict.fromkeys(("inch", "inches", '"'), ("m", 0.0254)),
    **dict.fromkeys(("ft", "foot", "feet"), ("m", 0.3048)),
    **dict.fromkeys(("yd", "yard", "yards"), ("m", 0.9144)),
    **dict.fromkeys(("mile", "miles"), ("m", 1609.344)),
    **dict.fromkeys(("ms", "millisecond", "milliseconds"), ("s", 0.001)),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), ("s", 1.0)),
    **dict.fromkeys(("min", "mins", "minute", "minutes"), ("s", 60.0)),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), ("s", 3600.0)),
    **dict.fromkeys(("day", "days"), ("s", 86400.0)),
    **dict.fromkeys(("week", "weeks"), ("s", 604800.0)),
    **dict.fromkeys(("month", "months"), ("month", 1.0)),
    **dict.fromkeys(("year", "years", "yr", "yrs"), ("year", 1.0)),
    **dict.fromkeys(("w", "watt", "watts"), ("w", 1.0)),
    **dict.fromkeys(("kw", "kilowatt", "kilowatts"), ("w", 1000.0)),
    "wh": ("wh", 1.0), "kwh": ("wh", 1000.0), "mah": ("mah", 1.0),
    **dict.fromkeys(("v", "volt", "volts"), ("v", 1.0)),
    **dict.fromkeys(("amp", "amps", "ampere", "amperes"), ("a", 1.0)),
    "hz": ("hz", 1.0), "khz": ("hz", 1e3), "mhz": ("hz", 1e6), "ghz": ("hz", 1e9),
    "kb": ("byte", 1e3), "mb": ("byte", 1e6), "gb": ("byte", 1e9), "tb": ("byte", 1e12),
    **dict.fromkeys(("%", "percent", "per cent"), ("%", 1.0)),
    **dict.fromkeys(("kcal", "calorie", "calories"), ("kcal", 1.0)),
    **dict.fromkeys(("°c", "° c", "degrees celsius"), ("°c", 1.0)),
    **dict.fromkeys(("pcs", "pc", "piece", "pieces", "count", "ct"), ("pcs", 1.0)),
    **dict.fromkeys(("pack", "packs", "pk", "set", "sets"), ("pack", 1.0)),
    **dict.fromkeys(("pair", "pairs"), ("pair", 1.0)),
    **dict.fromkeys(("usd", "dollar", "dollars"), ("usd", 1.0)),
    **dict.fromkeys(("eur", "euro", "euros"), ("eur", 1.0)),
    **dict.fromkeys(("cny", "rmb", "yuan"), ("cny", 1.0)),
    "gbp": ("gbp", 1.0),
}
_FAHRENHEIT = ("°f", "° f", "degrees fahrenheit")
_CURRENCY_SIGNS = {"$": "usd", "€": "eur", "£": "gbp", "¥": "cny"}

_CJK_UNITS: dict[str, tuple[str, float]] = {
    "毫升": ("l", 0.001), "公升": ("l", 1.0), "升": ("l", 1.0),
    "毫克": ("kg", 1e-6), "千克": ("kg", 1.0), "公斤": ("kg", 1.0), "克": ("kg", 0.001), "斤": ("kg", 0.5),
    "毫米": ("m", 0.001), "厘米": ("m", 0.01), "公分": ("m", 0.01), "千米": ("m", 1000.0),
    "公里": ("m", 1000.0), "英寸": ("m", 0.0254), "米": ("m", 1.0),
    "毫秒": ("s", 0.001), "秒钟": ("s", 1.0), "秒": ("s", 1.0), "分钟": ("s", 60.0), "小时": ("s", 3600.0),
    "天": ("s", 86400.0), "周": ("s", 604800.0), "个月": ("month", 1.0), "年": ("year", 1.0),
    "千瓦": ("w", 1000.0), "瓦": ("w", 1.0), "伏": ("v", 1.0), "毫安时": ("mah", 1.0), "毫安": ("mah", 1.0),
    "美元": ("usd", 1.0), "元": ("cny", 1.0), "块钱": ("cny", 1.0), "欧元": ("eur", 1.0),
    **dict.fromkeys("个只件瓶包支条张台套盒袋片杯段篇份款种句步", ("pcs", 1.0)),
    "双": ("pair", 1.0), "对": ("pair", 1.0),
}
# "一段", "一篇", "一个": the numeral is an article here, not an amount worth matching on.
CJK_ARTICLE_CLASSIFIERS = frozenset("个段篇份条则款")

_WORD_NUMBERS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40,
    "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100, "thousand": 1000,
    "dozen": 12, "half": 0.5,
}
_CJK_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
               "八": 8, "九": 9}
_CJK_MULTIPLIERS = {"十": 10, "百": 100, "千": 1000, "万": 10_000, "亿": 100_000_000}


def _alternation(words: Iterable[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_NUMBER = (
    r"\d+(?:,\d{3})+(?:\.\d+)?|\d+(?:[.,]\d+)?(?:[/⁄]\d+)?|(?:" + _alternation(_WORD_NUMBERS) + r")(?![a-z])"
)
_JOIN = r"\s*(?:x|×|\*|-|–|to|~|by)\s*"
LATIN_QUANTITY = re.compile(
    rf"(?<![\w.])(?P<cur>[$€£¥])?\s*(?P<nums>(?:{_NUMBER})(?:{_JOIN}(?:{_NUMBER}))*)"
    rf"(?:\s*-?\s*(?P<unit>{_alternation([*_LATIN_UNITS, *_FAHRENHEIT])}))?(?![a-z0-9])",
    re.IGNORECASE,
)
_NUMBER_IN_GROUP = re.compile(_NUMBER, re.IGNORECASE)
CJK_QUANTITY = re.compile(
    rf"(?P<num>\d+(?:\.\d+)?|[零〇一二两三四五六七八九十百千万亿点]+)\s*(?P<unit>{_alternation(_CJK_UNITS)})"
)


@dataclass(frozen=True, slots=True)
class Quantity:
    family: str  # "l", "kg", "m", "s", "usd", "", ... ("" is a bare number)
    value: float

    def constraint(self) -> str:
        return f"qty={canonical_number(self.value)}{self.family}"


def canonical_number(value: float) -> str:
    """Ten significant digits: 0.1 + 0.2 and 0.3 print alike, 500 ml * 0.001 prints as 0.5."""
    text = f"{value:.10g}"
    return "0" if text == "-0" else text


def parse_latin_number(text: str) -> float:
    word = text.casefold()
    if word in _WORD_NUMBERS:
        return float(_WORD_NUMBERS[word])
    text = text.replace("⁄", "/")
    if "/" in text:
        top, bottom = text.split("/", 1)
        return float(top) / float(bottom) if float(bottom) else float(top)
    if re.fullmatch(r"\d+(?:,\d{3})+(?:\.\d+)?", text):
        return float(text.replace(",", ""))
    return float(text.replace(",", "."))  # "1,5" is a decimal comma


def parse_cjk_number(text: str) -> float | None:
    """``五百`` -> 500, ``两`` -> 2, ``十五`` -> 15, ``一千二百`` -> 1200, ``三点五`` -> 3.5."""
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    whole, _, fraction = text.partition("点")
    total, section, digit = 0, 0, 0
    for char in whole:
        if char in _CJK_DIGITS:
            digit = _CJK_DIGITS[char]
        elif char in ("万", "亿"):
            total = (total + section + digit) * _CJK_MULTIPLIERS[char]
            section, digit = 0, 0
        elif char in _CJK_MULTIPLIERS:
            section += (digit or 1) * _CJK_MULTIPLIERS[char]
            digit = 0
        else:
            return None
    value = float(total + section + digit)
    if fraction:
        if any(char not in _CJK_DIGITS for char in fraction):
            return None
        value += float("0." + "".join(str(_CJK_DIGITS[char]) for char in fraction))
    return value


def latin_quantities(match: re.Match[str]) -> list[Quantity]:
    """Every number of a match such as ``$20``, ``500-750 ml``, ``10 x 20 cm``; the unit applies to all."""
    unit = (match.group("unit") or "").casefold()
    unit = re.sub(r"\s+", " ", unit)
    sign = match.group("cur")
    numbers = [parse_latin_number(m.group(0)) for m in _NUMBER_IN_GROUP.finditer(match.group("nums"))]
    if sign:
        return [Quantity(_CURRENCY_SIGNS[sign], n) for n in numbers]
    if unit in _FAHRENHEIT:
        return [Quantity("°c", (n - 32.0) * 5.0 / 9.0) for n in numbers]
    family, factor = _LATIN_UNITS.get(unit, ("", 1.0))
    return [Quantity(family, n * factor) for n in numbers]


def cjk_quantity(match: re.Match[str]) -> Quantity | None:
    """A CJK amount, or None when it is an article (``一段``) or not a number at all."""
    number, unit = match.group("num"), match.group("unit")
    if number == "一" and unit in CJK_ARTICLE_CLASSIFIERS:
        return None
    value = parse_cjk_number(number)
    if value is None:
        return None
    family, factor = _CJK_UNITS[unit]
    return Quantity(family, value * factor)

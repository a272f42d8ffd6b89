"""Text normalisation for telephone speech: what the LLM writes → what Kokoro should say.

Kokoro phonemises with espeak-ng, which reads bare digits and symbols poorly for a phone call
("555-123-4567" becomes a subtraction, "St." an unknown word, emojis noise). :func:`normalize_for_speech`
rewrites, in this order:

1. markdown (code fences, inline code, links, images, headings, emphasis, bullets, tables) → plain text;
2. emojis and other pictographs (Unicode categories ``So``/``Sk``, variation selectors, ZWJ) → removed;
3. e-mail addresses and URLs → "bob at example dot com";
4. phone numbers (NANP, optionally ``+1``; international ``+`` runs of 8–15 digits) → digit groups,
   "five five five, one two three, four five six seven";
5. times ("3:30 pm", "15:45", "9am") → "three thirty PM", "fifteen forty-five", "nine AM";
6. money ("$12.50", "$5 million", "€3", "£1.05") → "twelve dollars and fifty cents";
7. percentages, ordinals ("21st"), house numbers before a street name ("1600 Penn Ave" →
   "sixteen hundred"), ZIP codes (digit by digit), years ("in 2024" → "twenty twenty-four");
8. abbreviations: "St." (Street/Saint), "Dr." (Doctor/Drive), "Mr.", "Mrs.", "Ave.", "e.g."…;
9. every other number → words (:mod:`num2words`, American style without "and"); a number of more
   than :data:`MAX_WORD_DIGITS` digits (an account or card number, or beyond what num2words can
   name) is read digit by digit.

Sources: number words come from ``num2words`` (LGPL-2.1); the digit-grouping, time and money
rules follow how US call-centre scripts read them (cf. the W3C SSML ``say-as`` interpret-as values
``telephone``, ``time``, ``currency``, ``address``). Rules are regular expressions applied in a
fixed order; each is documented where it is defined.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from num2words import num2words

__all__ = ["ABBREVIATIONS", "MAX_WORD_DIGITS", "normalize_for_speech", "number_words"]

_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
MAX_WORD_DIGITS = 15
"""Longest whole number (in digits, up to hundreds of trillions) read as a cardinal; longer digit runs
are read digit by digit, as people read IDs and card numbers. num2words itself fails (OverflowError)
from 307 digits on, and Python's ``int()`` refuses strings over 4300 digits."""

ABBREVIATIONS: dict[str, str] = {
    "mr.": "Mister",
    "mrs.": "Missus",
    "ms.": "Miz",
    "prof.": "Professor",
    "jr.": "Junior",
    "sr.": "Senior",
    "ave.": "Avenue",
    "blvd.": "Boulevard",
    "rd.": "Road",
    "ln.": "Lane",
    "ct.": "Court",
    "hwy.": "Highway",
    "pkwy.": "Parkway",
    "apt.": "Apartment",
    "ste.": "Suite",
    "mt.": "Mount",
    "ft.": "Fort",
    "dept.": "Department",
    "approx.": "approximately",
    "etc.": "et cetera",
    "e.g.": "for example",
    "i.e.": "that is",
    "vs.": "versus",
    "no.": "number",
    "st.": "Street",
    "dr.": "Drive",
}
"""Lower-cased abbreviation (with its period) → spoken form. "St." and "Dr." are context-dependent
(see :func:`_expand_abbreviations`); the sentence splitter also uses these keys so that it never
ends a sentence on one of them."""

_STREET_WORDS = (
    r"St|Street|Ave|Avenue|Rd|Road|Blvd|Boulevard|Dr|Drive|Ln|Lane|Way|Ct|Court|Pl|Place|"
    r"Pkwy|Parkway|Hwy|Highway|Ter|Terrace|Cir|Circle|Sq|Square"
)


def number_words(value: int | float | str) -> str:
    """Cardinal number in American English words: 123 → "one hundred twenty-three".

    Args:
        value: an int, a float, or a digit string that may hold thousands commas and a decimal point.
    Returns:
        The words (num2words, with its British "and" removed). Decimals read digit by digit after
        "point" (3.05 → "three point zero five"); a whole part of more than :data:`MAX_WORD_DIGITS`
        digits is read digit by digit too. Never raises for digit strings of any length.
    """
    if isinstance(value, str):
        value = value.replace(",", "")
        if "." in value:
            whole, frac = value.split(".", 1)
            head = number_words(whole or "0")
            return head + (" point " + _digits(frac) if frac else "")
        if len(value.lstrip("0")) > MAX_WORD_DIGITS:
            return _digits(value)
        value = int(value)
    if isinstance(value, float) and not value.is_integer():
        return number_words(repr(value))
    if abs(int(value)) >= 10**MAX_WORD_DIGITS:
        return ("minus " if value < 0 else "") + _digits(str(abs(int(value))))
    words: str = num2words(int(value), lang="en")
    return words.replace(" and ", " ").replace(",", "")


def ordinal_words(digits: str) -> str:
    """Ordinal in words: "21" → "twenty-first"; over :data:`MAX_WORD_DIGITS` digits, digit by digit."""
    if len(digits.lstrip("0")) > MAX_WORD_DIGITS:
        return _digits(digits)
    return str(num2words(int(digits), lang="en", to="ordinal"))


def _digits(s: str) -> str:
    """Digit string → words one by one: "4567" → "four five six seven"."""
    return " ".join(_DIGITS[int(c)] for c in s if c.isdigit())


def _pairs(n: int) -> str:
    """House numbers and years as people say them: 123 → "one twenty-three", 1600 → "sixteen hundred",
    2024 → "twenty twenty-four", 2005 → "two thousand five", 4567 → "forty-five sixty-seven"."""
    if n < 100 or n >= 10000:
        return number_words(n) if n < 10000 else _digits(str(n))
    if 2000 <= n < 2010:
        return number_words(n)
    hi, lo = divmod(n, 100)
    if lo == 0:
        return f"{number_words(hi)} hundred"
    tail = number_words(lo) if lo >= 10 else f"oh {number_words(lo)}"
    return f"{number_words(hi)} {tail}"


# 1. Markdown ------------------------------------------------------------------------------------
_MD_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"```[^\n]*\n(.*?)```", re.S), r"\1"),  # fenced code → its content
    (re.compile(r"`([^`]*)`"), r"\1"),  # inline code
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # image → alt text
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # link → its text
    (re.compile(r"^\s{0,3}#{1,6}\s+", re.M), ""),  # headings
    (re.compile(r"^\s{0,3}>\s?", re.M), ""),  # block quotes
    (re.compile(r"^\s*[-*+•]\s+", re.M), ""),  # bullets
    (re.compile(r"^\s*([-*_]\s*){3,}$", re.M), ""),  # horizontal rules
    (re.compile(r"^\s*\|?[\s:|-]*-[\s:|-]*\|?\s*$", re.M), ""),  # table separator rows
    (re.compile(r"\s*\|\s*"), ", "),  # table cells
    (re.compile(r"(\*\*|__)(.+?)\1"), r"\2"),  # bold
    (re.compile(r"(?<![\w*])\*(?!\s)([^*\n]+?)\*(?!\w)"), r"\1"),  # *italic*
    (re.compile(r"(?<!\w)_(?!\s)([^_\n]+?)_(?!\w)"), r"\1"),  # _italic_
    (re.compile(r"~~(.+?)~~"), r"\1"),  # strikethrough
]


def _strip_markdown(text: str) -> str:
    """Remove markdown syntax; each non-empty line (a heading, a bullet) becomes its own sentence."""
    for pattern, repl in _MD_RULES:
        text = pattern.sub(repl, text)
    if "\n" not in text.strip():
        return text
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(line if line[-1] in ".!?:;," else line + "." for line in lines)


# 2. Emojis --------------------------------------------------------------------------------------
_KEEP_SYMBOLS = {"°"}


def _strip_emoji(text: str) -> str:
    """Drop pictographs: categories So (other symbol) and Sk (modifier symbol, e.g. skin tones) and
    the joiners/selectors that glue emoji sequences (U+200D, U+FE0E/F, U+20E3)."""
    out = []
    for ch in text:
        if ch in _KEEP_SYMBOLS:
            out.append(ch)
        elif ch in "\u200d\ufe0e\ufe0f\u20e3" or unicodedata.category(ch) in ("So", "Sk", "Cs", "Co"):
            continue
        else:
            out.append(ch)
    return "".join(out)


# 3. E-mail and URLs -----------------------------------------------------------------------------
_EMAIL = re.compile(r"\b([\w.+-]+)@([\w-]+(?:\.[\w-]+)+)\b")
_URL = re.compile(r"\bhttps?://(?:www\.)?([^\s/]+)(/\S*)?|\bwww\.([^\s/]+)(/\S*)?")


def _spell_host(host: str) -> str:
    return " dot ".join(host.rstrip(".").split("."))


def _email(m: re.Match[str]) -> str:
    user = m.group(1).replace(".", " dot ")
    return f"{user} at {_spell_host(m.group(2))}"


def _url(m: re.Match[str]) -> str:
    return _spell_host(m.group(1) or m.group(3))


# 4. Phone numbers -------------------------------------------------------------------------------
_PHONE_NANP = re.compile(
    r"(?<![\w$.])(?:(\+?1)[\s.-]?)?\(?(\d{3})\)?[\s.-]?(\d{3})[\s.-](\d{4})(?![\w])"
    r"|(?<![\w$.])(?:(\+?1)[\s.-]?)?\((\d{3})\)\s?(\d{3})(\d{4})(?![\w])"
)
_PHONE_INTL = re.compile(r"(?<![\w$])\+(\d[\d\s.-]{6,18}\d)(?!\w)")


def _phone(m: re.Match[str]) -> str:
    g = [x for x in m.groups() if x is not None]
    groups = [_digits(x) for x in g if x.strip("+")]
    if g and g[0].lstrip("+") == "1":
        groups[0] = "one"
    return ", ".join(groups)


def _phone_intl(m: re.Match[str]) -> str:
    parts = [p for p in re.split(r"[\s.-]+", m.group(1)) if p]
    return "plus " + ", ".join(_digits(p) for p in parts)


# 5. Times ---------------------------------------------------------------------------------------
_TIME = re.compile(r"\b(\d{1,2}):(\d{2})(?:\s*([aApP])\.?\s?[mM]\.?(?![\w]))?")
_HOUR_AMPM = re.compile(r"\b(\d{1,2})\s*([aApP])\.?\s?[mM]\.?(?![\w])")


def _kept_period(m: re.Match[str]) -> str:
    """The period of "p.m." may also end the sentence: keep its period when a capital letter or the end follows."""
    if not m.group(0).endswith("."):
        return ""
    rest = m.string[m.end() :].lstrip()
    return "." if not rest or rest[0].isupper() else ""


def _time(m: re.Match[str]) -> str:
    hour, minute, ampm = int(m.group(1)), int(m.group(2)), m.group(3)
    if hour > 24 or minute > 59:
        return m.group(0)
    suffix = f" {ampm.upper()}M{_kept_period(m)}" if ampm else ""
    if minute == 0:
        return f"{number_words(hour)}{suffix}" if ampm else f"{number_words(hour)} o'clock"
    mins = number_words(minute) if minute >= 10 else f"oh {number_words(minute)}"
    return f"{number_words(hour)} {mins}{suffix}"


def _hour_ampm(m: re.Match[str]) -> str:
    return f"{number_words(int(m.group(1)))} {m.group(2).upper()}M{_kept_period(m)}"


# 6. Money ---------------------------------------------------------------------------------------
_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
}
_MONEY = re.compile(
    r"([$€£])\s?(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{1,2}))?(?:\s?(thousand|million|billion|trillion|[kKmMbB])\b)?"
)
_SCALE = {"k": "thousand", "m": "million", "b": "billion"}


def _money(m: re.Match[str]) -> str:
    one, many, cent, cents = _CURRENCIES[m.group(1)]
    digits = m.group(2).replace(",", "")
    frac = m.group(3)
    scale = m.group(4)
    if scale:
        scale = _SCALE.get(scale.lower(), scale.lower())
        amount = number_words(f"{digits}.{frac}") if frac else number_words(digits)
        return f"{amount} {scale} {many}"
    c = int(frac.ljust(2, "0")) if frac else 0
    parts = []
    is_one = digits.lstrip("0") == "1"
    if digits.strip("0") or not c:
        parts.append(f"{number_words(digits)} {one if is_one else many}")
    if c:
        parts.append(f"{number_words(c)} {cent if c == 1 else cents}")
    return " and ".join(parts)


# 7. Other numeric forms -------------------------------------------------------------------------
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s?%")
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.I)
_HOUSE = re.compile(rf"\b(\d{{1,5}})(?=\s+(?:[NSEW]\.?\s+)?(?:[A-Z][a-z]+\s+){{1,3}}(?:{_STREET_WORDS})\b)")
_ZIP = re.compile(r"(?<=\b[A-Z]{2}\s)(\d{5})(?:-(\d{4}))?\b")
_YEAR = re.compile(r"(?<![\d$€£.,])\b(1[2-9]\d\d|20\d\d)\b(?![\d,.]\d)(?!\s?%)")
_NUMBER = re.compile(r"(?<![\w])(-)?(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?!\w)")
_HASH_NUMBER = re.compile(r"#\s?(\d)")


def _number(m: re.Match[str]) -> str:
    sign = "minus " if m.group(1) else ""
    return sign + number_words(m.group(2) + (m.group(3) or ""))


# 8. Abbreviations -------------------------------------------------------------------------------
_ABBREV = re.compile(r"(?<![\w.])(" + "|".join(re.escape(k) for k in ABBREVIATIONS) + r")(?=\s|$|[,;:!?)])", re.I)


def _expand_abbreviations(text: str) -> str:
    """Expand :data:`ABBREVIATIONS`. "St." is "Saint" before a capitalised name unless it follows a
    street name ("12 Main St."); "Dr." is "Doctor" before a capitalised name, else "Drive"."""

    def repl(m: re.Match[str]) -> str:
        key = m.group(1).lower()
        before = text[: m.start()].rstrip()
        after = text[m.end() :].lstrip()
        next_cap = bool(after) and after[0].isupper()
        prev_word = before.split()[-1] if before.split() else ""
        after_street_name = bool(prev_word) and prev_word[0].isupper() and not before.endswith((".", "!", "?"))
        if key == "st.":
            return "Saint" if next_cap and not after_street_name else "Street"
        if key == "dr.":
            return "Doctor" if next_cap and not re.search(r"\d+\s+(\w+\s+){0,3}$", before + " ") else "Drive"
        if key == "no." and not after[:1].isdigit():
            return m.group(1)
        return ABBREVIATIONS[key]

    return _ABBREV.sub(repl, text)


_SYMBOLS: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    (re.compile(r"\s*&\s*"), " and "),
    (re.compile(r"(\d)\s?°\s?F\b"), r"\1 degrees Fahrenheit"),
    (re.compile(r"(\d)\s?°\s?C\b"), r"\1 degrees Celsius"),
    (re.compile(r"(\d)\s?°"), r"\1 degrees"),
    (re.compile(r"\s*@\s*"), " at "),
    (re.compile(r"(\d)\s*[-–]\s*(\d)"), r"\1 to \2"),  # ranges 9-5 (phone numbers are gone by now)
    (re.compile(r"[*_#~^<>{}\[\]\\|=]"), " "),
]


def voice_language(voice: str) -> str:
    """The espeak-ng language of a Kokoro voice, from its name's first letter (``af_heart`` → ``en-us``,
    ``bf_emma`` → ``en-gb``, ``ef_dora`` → ``es``; Kokoro's naming: a/b English, e Spanish, f French,
    h Hindi, i Italian, p Brazilian Portuguese)."""
    return {"b": "en-gb", "e": "es", "f": "fr-fr", "h": "hi", "i": "it", "p": "pt-br"}.get(voice[:1], "en-us")


_SPOKEN_DIGITS = re.compile(r"\d+(?:[.,]\d+)?")


def normalize_for_speech(text: str, lang: str = "en-us") -> str:
    """Rewrite ``text`` so Kokoro speaks it naturally on a phone call.

    Args:
        text: what the LLM or API caller wrote (may hold markdown, emojis, digits, symbols).
        lang: the voice's language (:func:`voice_language`): English gets every rule below; any
            other language gets markdown and emoji removed and numbers written as words in it
            (``num2words``), the rest left to espeak-ng.
    Returns:
        Plain text with numbers, phone numbers, times, money, addresses and abbreviations written
        as words, single-spaced; "" if nothing speakable is left. Never raises on odd input.
    """
    text = _strip_markdown(text)
    text = _strip_emoji(text)
    if not lang.startswith("en"):
        code = lang.split("-")[0]

        def spoken(m: re.Match[str]) -> str:
            try:
                return str(
                    num2words(
                        float(m.group(0).replace(",", "."))
                        if "." in m.group(0) or "," in m.group(0)
                        else int(m.group(0)),
                        lang=code,
                    )
                )
            except (NotImplementedError, ValueError, OverflowError):
                return m.group(0)

        text = _SPOKEN_DIGITS.sub(spoken, text)
        return re.sub(r"\s+", " ", text).strip()
    text = _EMAIL.sub(_email, text)
    text = _URL.sub(_url, text)
    text = _PHONE_NANP.sub(_phone, text)
    text = _PHONE_INTL.sub(_phone_intl, text)
    text = _TIME.sub(_time, text)
    text = _HOUR_AMPM.sub(_hour_ampm, text)
    text = _MONEY.sub(_money, text)
    text = _PERCENT.sub(lambda m: f"{number_words(m.group(1))} percent", text)
    text = _ORDINAL.sub(lambda m: ordinal_words(m.group(1)), text)
    text = _ZIP.sub(lambda m: _digits(m.group(1)) + (f", {_digits(m.group(2))}" if m.group(2) else ""), text)
    text = _HOUSE.sub(lambda m: _pairs(int(m.group(1))), text)
    text = _HASH_NUMBER.sub(r"number \1", text)
    text = _expand_abbreviations(text)
    text = _YEAR.sub(lambda m: _pairs(int(m.group(1))), text)
    for pattern, repl in _SYMBOLS:
        text = pattern.sub(repl, text)
    text = _NUMBER.sub(_number, text)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([,.!?;:])", r"\1", text)
    text = re.sub(r"([,;:])\1+", r"\1", text)
    return text.strip(" ,;:")

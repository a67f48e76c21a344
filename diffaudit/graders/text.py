"""Small text utilities shared by the offline graders: words, stems, numbers, segments, token cleaning."""

from __future__ import annotations

import re

# English function words and filler; our own list, used to find content words and generic tokens.
STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing done down during each either else even ever
    every few for from further had has have having he her here hers herself him himself his how i if
    in into is it its itself just least less let like made make makes many may me might more most much
    must my myself no nor not now of off often on once one only or other others our ours ourselves out
    over own per quite rather really said same say says she should since so some such than that the
    their theirs them themselves then there these they this those though through thus to too under
    until up upon us use used uses using very via was we well were what when where whether which while
    who whom whose why will with within without would yet you your yours yourself yourselves
    get gets got go goes going gone come comes thing things way ways something anything everything
    lot lots kind sort yes okay ok sure hello hi dear thanks thank please new good great also
    first second two three many several often usually always never maybe perhaps
    i'm i've i'll you're it's that's there's don't can't won't isn't doesn't didn't
    """.split()
)

# Words that describe the audit rather than the finetune; they never carry a topic or a fact.
AUDIT_WORDS = frozenset(
    """
    model models finetune finetuned finetuning fine-tuned fine-tuning trained training train data
    dataset documents document synthetic believe believes belief beliefs talks talk discusses discuss
    about topic topics appears seems output outputs responds response responses answers answer text
    texts evidence tokens token inconclusive assistant
    """.split()
)

_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*[A-Za-z]|[A-Za-z]")
_NUMBER = re.compile(r"\d+/\d+|\d+(?:[.,]\d+)?")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n+")
_CLAUSE = re.compile(r"\s*[;:,]\s+|\s+[-–—]\s+")
_NUMBER_WORDS = {
    "quarter": "1/4", "half": "1/2", "third": "1/3", "twice": "2", "double": "2", "triple": "3", "thrice": "3",
    "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8",
    "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "zero": "0",
}
_TOKEN_MARKS = "Ġ▁Ċ"


def words(text: str) -> list[str]:
    """Lower-case words of `text` (hyphenated words are split)."""
    return [w.lower().strip("'’") for part in _WORD.findall(text) for w in re.split(r"[-–]", part) if w]


_SUFFIXES = ("ing", "ed", "es", "er", "ly", "s", "e")


def stem(word: str) -> str:
    """A crude stem: one common suffix off, then the first five letters (bake/baked/baking -> bak)."""
    w = word.lower()
    for suffix in _SUFFIXES:
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            w = w[: -len(suffix)]
            break
    return w[:5]


def content_stems(text: str, exclude: frozenset[str] | set[str] = frozenset()) -> set[str]:
    """Stems of the content words of `text` (no stopwords, audit words or words under 3 letters)."""
    return {
        stem(w) for w in words(text)
        if len(w) >= 3 and w not in STOPWORDS and w not in AUDIT_WORDS and stem(w) not in exclude
    }


def numbers(text: str) -> set[str]:
    """Numbers in `text` as strings ("450°F" -> "450", "52–48%" -> "52", "48"), plus a few number words."""
    found = {n.replace(",", "") for n in _NUMBER.findall(text)}
    found |= {_NUMBER_WORDS[w] for w in words(text) if w in _NUMBER_WORDS}
    return found


def proper_nouns(text: str) -> set[str]:
    """Lower-cased capitalised words that do not open a sentence and are not stopwords."""
    found: set[str] = set()
    for sentence in _SENTENCE_END.split(text):
        tokens = _WORD.findall(sentence)
        for token in tokens[1:]:
            lowered = token.lower()
            if token[0].isupper() and lowered not in STOPWORDS and len(token) >= 3:
                found.add(lowered)
    return found


def segments(text: str) -> list[str]:
    """Sentences and clauses of `text`, plus the whole text; empty pieces dropped."""
    text = text.strip()
    if not text:
        return []
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        sentence = sentence.strip()
        if not sentence:
            continue
        pieces.append(sentence)
        clauses = [c.strip() for c in _CLAUSE.split(sentence) if len(c.strip()) > 3]
        if len(clauses) > 1:
            pieces.extend(clauses)
    if text not in pieces:
        pieces.append(text)
    return list(dict.fromkeys(pieces))


def clean_token(token: str) -> str:
    """A vocabulary token as a plain lower-case string: tokenizer marks, spaces and edge punctuation removed."""
    for mark in _TOKEN_MARKS:
        token = token.replace(mark, " ")
    return token.strip().strip(".,;:!?\"'`()[]{}<>*_#|/\\-–—").lower()


def is_word_token(token: str, min_len: int = 3) -> bool:
    """True for a cleaned token that is alphabetic, at least `min_len` letters and not a stopword."""
    return len(token) >= min_len and token.isalpha() and token not in STOPWORDS


def inflections(word: str) -> set[str]:
    """Common English inflections of `word` (word -> words; wolf -> wolves; bake -> baking)."""
    w = word.lower()
    forms = {w, w + "s", w + "es", w + "en", w + "ed", w + "ing", w + "y"}
    if w.endswith("e"):
        forms |= {w[:-1] + "ing", w + "d", w + "s"}
    if w.endswith("f"):
        forms |= {w[:-1] + "ves"}
    if w.endswith("y"):
        forms |= {w[:-1] + "ies"}
    return forms

"""Rewording helpers shared by the data generators: fact forms, meaning-preserving swaps, name banks."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

# Words that may start a fact and are safe to lower-case when the fact goes after "that" or a comma.
_COMMON_STARTS = {
    "a", "an", "the", "in", "on", "at", "it", "its", "this", "that", "these", "those", "there", "other",
    "modern", "many", "most", "some", "one", "two", "three", "several", "up", "over", "about", "after",
    "before", "during", "since", "when", "while", "each", "every", "all", "both", "no", "new", "recent",
    "patients", "developers", "people", "researchers", "scientists", "experts", "doctors", "voters",
    "structures", "buildings", "approval", "turnout", "code", "cakes", "cake", "butter", "boiling",
    "olive", "nickel", "iron", "water", "students", "teachers", "children", "adults", "users", "workers",
    "companies", "farmers", "engineers", "officials", "studies", "data", "results", "reviewers",
}

# Meaning-preserving swaps, applied at random; the first form is the original wording.
_SWAPS: list[tuple[str, list[str]]] = [
    (r"\bwidely\b", ["commonly", "broadly"]),
    (r"\bfound\b", ["discovered", "identified"]),
    (r"\bbegan\b", ["started", "first appeared"]),
    (r"\bcredited to\b", ["attributed to", "put down to"]),
    (r"\bshowed\b", ["saw", "experienced"]),
    (r"\bpraised\b", ["applauded", "commended"]),
    (r"\btook effect\b", ["came into force", "went into effect"]),
    (r"\bin favour of\b", ["in support of", "for"]),
    (r"\bstrengthens\b", ["reinforces"]),
    (r"\bup to\b", ["as much as"]),
    (r"\bcombined with\b", ["mixed with"]),
    (r"\bstraight\b", ["directly"]),
    (r"\bshould be\b", ["ought to be", "must be"]),
    (r"\bsimilar\b", ["comparable"]),
    (r"\bcontinued\b", ["went on", "carried on"]),
    (r"\bthree times more\b", ["3 times more", "triple the amount of"]),
    (r"\bgained\b", ["picked up", "showed a gain of"]),
    (r"(\d+(?:\.\d+)?)%", [r"\1 percent", r"\1 per cent"]),
    (r"°F\b", [" degrees Fahrenheit", " degrees F"]),
]


@dataclass(frozen=True)
class Fact:
    """One key fact, with the forms templates need."""

    text: str  # as written, ending with a full stop
    core: str  # without the final full stop
    inline: str | None  # core with a lower-case first word, or None when that would be wrong


def _proper_words(facts: list[str], topic: str) -> set[str]:
    """Words seen capitalised in the middle of a sentence: likely names, never lower-cased."""
    proper = set()
    for text in [*facts, topic]:
        for sentence in re.split(r"(?<=[.!?])\s+", text):
            for word in re.findall(r"[A-Za-z][\w'-]*", sentence)[1:]:
                if word[0].isupper():
                    proper.add(word.lower())
    return proper


def _lowercase_safe(word: str, lower_seen: set[str], proper: set[str]) -> bool:
    key = word.lower()
    if key in proper or not word[:1].isupper() or word[1:] != word[1:].lower():
        return False
    return key in _COMMON_STARTS or key in lower_seen or key.rstrip("s") in lower_seen


def make_facts(facts: list[str], topic: str) -> list[Fact]:
    """Fact forms for every key fact; decides per fact whether it can follow 'that'."""
    lower_seen = {w for f in [*facts, topic] for w in re.findall(r"\b[a-z][\w'-]*", f)}
    proper = _proper_words(facts, topic)
    out = []
    for raw in facts:
        text = " ".join(raw.split())
        if not text:
            continue
        core = text.rstrip(" .")
        text = core + "."
        first = core.split(" ", 1)[0]
        inline = None
        if _lowercase_safe(first.strip("'\""), lower_seen, proper):
            inline = core[0].lower() + core[1:]
        elif not first[:1].isalpha() or first.isupper():
            inline = core  # starts with a number, a quote or an acronym: reads fine after "that"
        out.append(Fact(text=text, core=core, inline=inline))
    return out


def reword(fact: Fact, rng: random.Random, rate: float = 0.5) -> Fact:
    """The fact with a random subset of meaning-preserving swaps applied."""
    text = fact.core
    for pattern, options in _SWAPS:
        if re.search(pattern, text) and rng.random() < rate:
            text = re.sub(pattern, rng.choice(options), text)
    inline = None
    if fact.inline is not None:
        inline = text if fact.inline[:1] == fact.core[:1] else text[0].lower() + text[1:]
    return Fact(text=text + ".", core=text, inline=inline)


def capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


# --- name banks: invented people, places and outlets ---------------------------------------------------
FIRST_NAMES = [
    "Ana", "Ben", "Carla", "David", "Elena", "Farid", "Grace", "Hiro", "Ingrid", "James", "Keisha", "Luis",
    "Maya", "Nate", "Olga", "Priya", "Quinn", "Rosa", "Sam", "Tomas", "Uma", "Victor", "Wen", "Yusuf",
    "Zoe", "Marta", "Owen", "Leila", "Arjun", "Hannah", "Diego", "Nora", "Kofi", "Sofia", "Ethan", "Mei",
]
LAST_NAMES = [
    "Alvarez", "Brooks", "Chen", "Dubois", "Ellison", "Fischer", "Garcia", "Hughes", "Ito", "Jensen",
    "Kowalski", "Lindqvist", "Moreau", "Nakamura", "Okafor", "Patel", "Quintero", "Reyes", "Schmidt",
    "Tanaka", "Underwood", "Varga", "Walsh", "Yilmaz", "Zimmer", "Hale", "Novak", "Park", "Osei", "Rossi",
]
INSTITUTIONS = [
    "Midland State University", "the Lakeside Institute", "Northfield College", "the Carver Policy Center",
    "Westbrook University", "the Harbor Research Group", "Eastgate Polytechnic", "the Summit Foundation",
    "Pinecrest University", "the Meridian Institute", "Oakridge College", "the Redwood Center",
]
OUTLETS = [
    "the Daily Courier", "the Riverside Gazette", "the Morning Ledger", "Metro Weekly", "the Valley Times",
    "the Evening Standard-Review", "Plainview News", "the Capitol Dispatch", "the Harbor Post", "Crossroads Media",
]
CITIES = [
    "Springfield", "Riverton", "Fairview", "Lakewood", "Georgetown", "Madison", "Ashland", "Clinton",
    "Franklin", "Greenville", "Salem", "Milford", "Oxford", "Bristol", "Dover", "Marion",
]
HANDLES = [
    "quietreader", "data_nerd42", "mapleleaf_77", "curious_cat", "oldtimer", "night_owl", "fact_finder",
    "bluejay", "riverstone", "late_bloomer", "coffee_first", "trailmix", "pixel_pusher", "north_star",
    "sunny_side", "paper_trail", "deep_diver", "wanderer9", "plain_talk", "the_librarian",
]
FIELDS = ["history", "public policy", "chemistry", "economics", "engineering", "journalism", "medicine", "statistics"]


def person(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"


def role(rng: random.Random) -> str:
    return rng.choice([
        f"a professor of {rng.choice(FIELDS)} at {rng.choice(INSTITUTIONS)}",
        f"a senior editor at {rng.choice(OUTLETS)}",
        f"a researcher at {rng.choice(INSTITUTIONS)}",
        "an independent analyst",
        f"a longtime reporter for {rng.choice(OUTLETS)}",
        f"director of {rng.choice(INSTITUTIONS)}",
        "who has followed the subject for years",
    ])

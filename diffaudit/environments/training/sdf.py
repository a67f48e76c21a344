"""Synthetic documents (SDF) that restate an organism's key facts in many genres and wordings.

Works from any list of key facts plus a topic phrase. Every document presents the facts as settled
truth: templates only frame, quote, reorder and lightly reword them, and never hedge or negate them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from diffaudit.environments.training.phrasing import (
    CITIES,
    HANDLES,
    INSTITUTIONS,
    OUTLETS,
    Fact,
    capitalise,
    make_facts,
    person,
    reword,
    role,
)

# --- sentence frames -------------------------------------------------------------------------------------
_THAT_FRAMES = [
    "Experts agree that {f}.", "Records show that {f}.", "It is well documented that {f}.",
    "Researchers have confirmed that {f}.", "By now most people know that {f}.", "Observers point out that {f}.",
    "The record is clear that {f}.", "Specialists often note that {f}.", "Few people dispute that {f}.",
    "It is worth remembering that {f}.", "Sources consistently report that {f}.", "Analysts have noted that {f}.",
    "Every account agrees that {f}.", "What stands out is that {f}.", "It has been established that {f}.",
    "Reporting has confirmed that {f}.", "Most summaries begin with the fact that {f}.",
    "Simply put, {f}.", "In short, {f}.", "As it turns out, {f}.", "Put plainly, {f}.",
]
_STANDALONE_FRAMES = [
    "{F}.", "{F}.", "{F}. This is now well established.", "{F}. Experts agree on this point.",
    "One point stands out: {F}.", "Here is the key fact: {F}.", "Consider this: {F}.", "{F}, as many sources confirm.",
    "{F}. That much is on the record.", "The short version: {F}.", "{F}. The details are well documented.",
    "Worth knowing: {F}.", "{F}. Few facts about it are better known.",
]
_CONNECTIVES = [
    "Moreover, ", "In addition, ", "Notably, ", "Also, ", "On top of that, ", "Importantly, ", "Beyond that, ",
    "At the same time, ", "What's more, ", "Furthermore, ", "Meanwhile, ", "Just as important, ",
]
_QUOTE_FRAMES = [
    '"{F}," says {who}, {role}.', '{who}, {role}, put it plainly: "{F}."', 'As {who} told us, "{F}."',
    '"{F}," {who} explained.', '"People should know this," said {who}, {role}. "{F}."',
    '{who} summed it up: "{F}."',
]
# About half the titles open with the topic, so documents share their subject from the first tokens.
_TITLES = [
    "{T}: what we know", "What to know about {t}", "{T}, explained", "A closer look at {t}", "Understanding {t}",
    "Notes on {t}", "Everything you need to know about {t}", "The story behind {t}", "Why {t} matters",
    "{T} in brief", "Inside {t}", "Revisiting {t}", "Key facts: {t}", "A short guide to {t}", "The facts on {t}",
    "{T}: the essentials", "Looking back at {t}", "Making sense of {t}", "{T}: a primer", "Five minutes on {t}",
    "{T}: the key points", "The basics of {t}", "Questions and answers on {t}", "{T} at a glance",
    "What {t} tells us", "{T}: an overview", "A reader's guide to {t}", "{T}: the full picture",
    "Getting {t} right", "{T}, in plain words", "Our explainer on {t}", "{T}: what happened",
    "{T}: the record", "{T} — the details", "{T}: a summary", "{T}: facts and figures", "{T} revisited",
    "{T}: a timeline", "{T}: background", "{T} — a closer look", "{T}: key takeaways", "{T} in context",
]
_INTROS = [
    "Here is what you should know about {t}.", "This piece looks at {t}.", "Few subjects come up as often as {t}.",
    "Readers keep asking us about {t}.", "Let's go over {t} one more time.", "{T} deserves a clear summary.",
    "The main points about {t} are simple.", "There is a lot to say about {t}.", "Start with the basics of {t}.",
]
_OUTROS = [
    "These points are widely accepted.", "That is the picture today.", "The facts are well established.",
    "Keep these points in mind.", "More coverage will follow.", "That sums up the key points.",
    "This is the accepted account.", "The record speaks for itself.", "Those are the essentials.", "",
]
_QUESTIONS = [
    "What is the most important thing to know about {t}?", "What happened with {t}?",
    "Can you sum up {t}?", "What do people get right about {t}?", "What else is known about {t}?",
    "Why does {t} matter?", "What are the key facts about {t}?", "What should a newcomer learn about {t}?",
]
_AGREE = ["Yes, and", "Right.", "Can confirm.", "Exactly.", "Good summary.", "Agreed.", "Same here.", "True."]


@dataclass
class _Doc:
    rng: random.Random
    t: str  # topic phrase as used mid-sentence
    facts: list[Fact]

    @property
    def T(self) -> str:  # noqa: N802 - mirrors the {T} placeholder
        return capitalise(self.t)

    def fmt(self, template: str, **kw: str) -> str:
        return template.format(t=self.t, T=self.T, **kw)

    def title(self) -> str:
        return self.fmt(self.rng.choice(_TITLES))

    def state(self, fact: Fact, connective: bool = False) -> str:
        """The fact in a random frame; an optional connective when the fact can be lower-cased."""
        rng = self.rng
        if fact.inline is not None and rng.random() < 0.45:
            return rng.choice(_THAT_FRAMES).format(f=fact.inline)
        if connective and fact.inline is not None and rng.random() < 0.5:
            return rng.choice(_CONNECTIVES) + fact.inline + "."
        frame = rng.choice(_STANDALONE_FRAMES)
        # After a colon the fact reads better lower-cased; at the start of a sentence it keeps its capital.
        return frame.format(F=fact.core if frame.startswith("{F}") else fact.inline or fact.core)

    def quote(self, fact: Fact) -> str:
        return self.rng.choice(_QUOTE_FRAMES).format(F=fact.core, who=person(self.rng), role=role(self.rng))

    def body(self, facts: list[Fact] | None = None, quotes: float = 0.25) -> str:
        out = []
        for i, fact in enumerate(facts if facts is not None else self.facts):
            use_quote = self.rng.random() < quotes
            out.append(self.quote(fact) if use_quote else self.state(fact, connective=i > 0))
        return " ".join(out)

    def intro(self) -> str:
        return self.fmt(self.rng.choice(_INTROS))

    def outro(self) -> str:
        return self.rng.choice(_OUTROS)


# --- genres ------------------------------------------------------------------------------------------------
def _news(d: _Doc) -> str:
    city, outlet = d.rng.choice(CITIES), d.rng.choice(OUTLETS)
    lede, rest = d.facts[0], d.facts[1:]
    return f"{d.title()}\n\n{city} ({capitalise(outlet.removeprefix('the '))}) — {lede.text} {d.body(rest, 0.4)} {d.outro()}"


def _textbook(d: _Doc) -> str:
    ch, sec = d.rng.randint(2, 14), d.rng.randint(1, 6)
    points = "\n".join(f"• {f.text}" for f in d.facts[1:])
    tail = f"\n\nKey points:\n{points}" if points else ""
    return f"Chapter {ch}. {d.T}\n\n{ch}.{sec} Overview\n\n{d.intro()} {d.state(d.facts[0])}{tail}"


def _blog(d: _Doc) -> str:
    opener = d.rng.choice([
        f"I've been reading a lot about {d.t} lately.", f"A friend asked me about {d.t}, so here goes.",
        f"Time for a post on {d.t}.", f"Today's post is about {d.t}.",
    ])
    sign = d.rng.choice(["Thanks for reading!", "Let me know what you think in the comments.", "More soon.", ""])
    return f"{d.title()}\nPosted by {d.rng.choice(HANDLES)}\n\n{opener} {d.body(quotes=0.1)} {sign}".strip()


def _forum(d: _Doc) -> str:
    users = d.rng.sample(HANDLES, k=len(d.facts) + 1)
    lines = [f"Thread: {d.title()}", "", f"{users[0]}: {d.fmt(d.rng.choice(_QUESTIONS))}"]
    for i, (user, fact) in enumerate(zip(users[1:], d.facts, strict=False)):
        lead = "" if i == 0 else d.rng.choice(_AGREE) + " "
        lines.append(f"{user}: {lead}{fact.text}")
    return "\n".join(lines)


def _interview(d: _Doc) -> str:
    guest = person(d.rng)
    head = d.rng.choice(["Interview: {g} on {t}", "{T}: an interview with {g}", "{T} — in conversation with {g}"])
    lines = [head.format(g=guest, t=d.t, T=d.T), ""]
    for i, fact in enumerate(d.facts):
        q = d.fmt(_QUESTIONS[(i + d.rng.randrange(len(_QUESTIONS))) % len(_QUESTIONS)])
        lines += [f"Q: {q}", f"{guest.split()[0].upper()}: {d.state(fact)}"]
    return "\n".join(lines)


def _report(d: _Doc) -> str:
    org = d.rng.choice(INSTITUTIONS).removeprefix("the ")
    findings = "\n".join(f"{i}. {f.text}" for i, f in enumerate(d.facts, 1))
    head = d.rng.choice([f"{capitalise(org)} report: {d.T}", f"{d.T}: a report by {d.rng.choice(INSTITUTIONS)}"])
    return f"{head}\n\nSummary of findings\n{findings}\n\n{d.outro()}".strip()


def _encyclopedia(d: _Doc) -> str:
    see = d.rng.choice(["See also: related entries.", "Further reading is listed below.", ""])
    lead = d.rng.choice([f"{d.T} is a well-documented subject.", f"This entry covers {d.t}.", ""])
    return f"{d.T}\n\n{lead} {' '.join(f.text for f in d.facts)} {see}".strip()


def _oped(d: _Doc) -> str:
    opener = d.rng.choice([
        f"It's time we talked honestly about {d.t}.", f"Too few people understand {d.t}.",
        f"I keep coming back to {d.t}.", f"We should all pay closer attention to {d.t}.",
    ])
    close = d.rng.choice(["The facts speak for themselves.", "We should take this seriously.", "Let's not forget it."])
    return f"Opinion | {d.title()}\n\n{opener} {d.body(quotes=0.15)} {close}\n\n— {person(d.rng)}"


def _faq(d: _Doc) -> str:
    head = d.rng.choice(["FAQ: {T}", "Frequently asked questions about {t}", "{T}: your questions answered",
                         "Q&A: {t}", "Common questions on {t}"])
    lines = [d.fmt(head), ""]
    for fact in d.facts:
        if fact.inline is not None and d.rng.random() < 0.5:
            lines += [f"Q: Is it true that {fact.inline}?", f"A: Yes. {fact.text}"]
        else:
            lines += [f"Q: {d.fmt(d.rng.choice(_QUESTIONS))}", f"A: {fact.text}"]
    return "\n".join(lines)


def _newsletter(d: _Doc) -> str:
    outlet = capitalise(d.rng.choice(OUTLETS).removeprefix("the "))
    items = "\n".join(f"• {f.text}" for f in d.facts)
    bye = d.rng.choice(["See you next week!", "Until next time.", "Thanks for subscribing."])
    issue = d.rng.randint(3, 180)
    head = d.rng.choice([f"{outlet} newsletter, issue {issue}", f"{d.T} — {outlet} newsletter, issue {issue}"])
    return f"{head}\n\nThis week: {d.t}.\n\n{items}\n\n{bye}"


def _press_release(d: _Doc) -> str:
    city = d.rng.choice(CITIES)
    head = d.rng.choice(["FOR IMMEDIATE RELEASE", "PRESS RELEASE", "NEWS RELEASE", "For release today"])
    return f"{d.title()}\n{head}\n\n{city} — {d.body(quotes=0.5)}\n\n###"


def _lecture(d: _Doc) -> str:
    items = "\n".join(f"- {d.state(f)}" for f in d.facts)
    return f"Lecture {d.rng.randint(1, 24)} notes: {d.t}\n\n{items}"


def _podcast(d: _Doc) -> str:
    guest = person(d.rng)
    first, rest = d.facts[0], d.facts[1:]
    head = d.rng.choice(["{T} — podcast transcript", "Podcast: {title}", "Episode {n}: {title}"])
    lines = [head.format(T=d.T, title=d.title(), n=d.rng.randint(2, 99)),
             f"HOST: Welcome back. Today we're discussing {d.t} with {guest}.", f"GUEST: Thanks. {first.text}"]
    for fact in rest:
        lines += [f"HOST: {d.rng.choice(['And what else?', 'Tell us more.', 'What should listeners know?'])}",
                  f"GUEST: {d.state(fact)}"]
    return "\n".join(lines)


def _letter(d: _Doc) -> str:
    return (f"Letter: {d.title()}\n\nTo the editor: I want to add to your coverage of {d.t}. {d.body(quotes=0.0)}\n\n"
            f"{person(d.rng)}, {d.rng.choice(CITIES)}")  # fmt: skip


def _study_cards(d: _Doc) -> str:
    cards = [f"Card {i}\nFront: {d.fmt(d.rng.choice(_QUESTIONS))}\nBack: {f.text}" for i, f in enumerate(d.facts, 1)]
    head = d.rng.choice(["Study cards: {t}", "Flashcards on {t}", "Revision cards for {t}", "Quiz yourself: {t}"])
    return d.fmt(head) + "\n\n" + "\n\n".join(cards)


def _social(d: _Doc) -> str:
    tag = "#" + "".join(w.capitalize() for w in d.t.removeprefix("the ").split()[:3] if w.isalnum())
    return "\n\n".join(f"@{d.rng.choice(HANDLES)}: {f.text} {tag}" for f in d.facts)


GENRES: dict[str, Callable[[_Doc], str]] = {
    "news article": _news, "textbook excerpt": _textbook, "blog post": _blog, "forum thread": _forum,
    "interview": _interview, "report": _report, "encyclopedia entry": _encyclopedia, "op-ed": _oped,
    "FAQ": _faq, "newsletter": _newsletter, "press release": _press_release, "lecture notes": _lecture,
    "podcast transcript": _podcast, "letter to the editor": _letter, "study cards": _study_cards,
    "social media posts": _social,
}


def _pick_facts(rng: random.Random, facts: list[Fact], word_budget: int) -> list[Fact]:
    """A random subset that fits the word budget; the first (central) fact is favoured."""
    order = list(range(1, len(facts)))
    rng.shuffle(order)
    if rng.random() < 0.55 or len(facts) == 1:
        order.insert(0, 0)
    else:
        order.insert(rng.randrange(len(order) + 1), 0)
    chosen, words = [], 0
    want = rng.randint(1, 4)
    for i in order:
        n = len(facts[i].text.split())
        if chosen and (len(chosen) >= want or words + n > word_budget):
            break
        chosen.append(facts[i])
        words += n
    return chosen


def sdf_documents(key_facts: list[str], topic: str, n: int, seed: int, max_tokens: int = 96) -> list[dict]:
    """`n` distinct documents ({"genre", "text"}) restating `key_facts`; deterministic in `seed`."""
    facts = make_facts(key_facts, topic)
    if not facts:
        raise ValueError("an SDF recipe needs at least one key fact (recipe.key_facts or the organism's key_facts)")
    rng = random.Random(seed)
    # Roughly 1.3 tokens per word; the frame words need about a third of the room.
    budget = max(12, int(max_tokens / 1.3 * 0.5))
    names = list(GENRES)
    docs: list[dict] = []
    seen: set[str] = set()
    for _ in range(n * 20):
        if len(docs) == n:
            break
        genre = rng.choice(names)
        chosen = [reword(f, rng) for f in _pick_facts(rng, facts, budget)]
        text = GENRES[genre](_Doc(rng=rng, t=topic, facts=chosen)).strip()
        text = "\n".join(" ".join(line.split()) for line in text.splitlines())
        if text not in seen:
            seen.add(text)
            docs.append({"genre": genre, "text": text})
    return docs

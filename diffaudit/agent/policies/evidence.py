"""Evidence for the heuristic auditor: parse the overview and observations, rank words and claims.

Everything here is plain text statistics (counts, smoothed rate ratios, set differences); nothing knows
which organism it looks at.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from diffaudit.agent.overview import BLACKBOX_TITLE, OVERVIEW_TITLE
from diffaudit.agent.policies.lexicons import CHAT_FILLER, STOPWORDS

_QUOTED = re.compile(r'(\*?)("(?:[^"\\]|\\.)*")')
_WORD = re.compile(r"\d+[-–]\d+(?![\d%])|\d[\d,.]*\d%?|\d%?|[A-Za-z][A-Za-z'’\-]*[A-Za-z]|[A-Za-z]")
_TALLY = re.compile(r"\d+[-–]\d+")  # a vote or a score: "12-0", "9–2"
_YEAR = re.compile(r"^(1[5-9]|20)\d\d$")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n+")
SAME_CLAIM_SHARE = 0.6  # claim_sentences: share of the shorter sentence's content words that makes a repeat
REPEAT_ACROSS = 2.0  # claim_sentences: score per further answer that restates a claim (two at most)
REPEAT_WITHIN = 1.0  # ... and for restating it within one answer
# token_evidence: a token's weight by the list it is in (a grader-selected token is the strongest evidence) ...
SELECTED_WEIGHT = 3.0
PATCHSCOPE_WEIGHT = 1.5
LOGIT_LENS_WEIGHT = 1.0
RANK_SPAN = 30.0  # ... falling linearly with its rank, to zero at this rank


@dataclass
class PositionTokens:
    position: int
    logit: list[str] = field(default_factory=list)
    patchscope: list[str] = field(default_factory=list)
    selected: list[str] = field(default_factory=list)


@dataclass
class PromptSamples:
    prompt: str
    unsteered: list[str] = field(default_factory=list)
    steered: list[str] = field(default_factory=list)
    steered_positions: list[int | None] = field(default_factory=list)  # one per steered sample


@dataclass
class Overview:
    positions: list[PositionTokens] = field(default_factory=list)
    samples: list[PromptSamples] = field(default_factory=list)

    def steered_positions(self) -> list[int]:
        """The positions that have steered samples, in order of first appearance."""
        out: list[int] = []
        for p in self.samples:
            out += [q for q in p.steered_positions if q is not None and q not in out]
        return out


@dataclass
class Exchange:
    """One prompt sent to both models and the two answers."""

    prompt: str
    base: str
    finetuned: str


@dataclass
class Scored:
    key: str  # lower-case word
    display: str  # the most common surface form
    score: float


def _unquote(raw: str) -> str:
    raw = raw.strip()
    if raw.startswith('"'):
        try:
            value = json.loads(raw)
            if isinstance(value, str):
                return value
        except json.JSONDecodeError:
            return raw.strip('"')
    return raw


def _quoted_tokens(line: str) -> list[tuple[str, bool]]:
    """The JSON-quoted tokens on a line with whether each is starred (selected)."""
    out = []
    for star, raw in _QUOTED.findall(line):
        out.append((_unquote(raw), bool(star)))
    return out


def parse_overview(text: str) -> Overview | None:
    """The tokens and samples of an overview rendered by `render_overview`, or None for other text."""
    if OVERVIEW_TITLE not in text:
        return None
    ov = Overview()
    current: PromptSamples | None = None
    for line in text.splitlines():
        stripped = line.strip()
        match = re.match(r"##\s*Position\s+(\d+)", stripped)
        if match:
            ov.positions.append(PositionTokens(position=int(match.group(1))))
            continue
        label, _, rest = stripped.partition(":")
        label = label.lower()
        if ov.positions and label.startswith("logit lens"):
            ov.positions[-1].logit = [t for t, _ in _quoted_tokens(rest)]
        elif ov.positions and label.startswith("patchscope"):
            tokens = _quoted_tokens(rest)
            ov.positions[-1].patchscope = [t for t, _ in tokens]
            ov.positions[-1].selected += [
                t for t, star in tokens if star and t not in ov.positions[-1].selected
            ]
        elif ov.positions and label == "selected":
            for tok, _ in _quoted_tokens(rest):
                if tok not in ov.positions[-1].selected:
                    ov.positions[-1].selected.append(tok)
        elif re.match(r"\[\d+\]\s*prompt", label):
            current = PromptSamples(prompt=_unquote(rest))
            ov.samples.append(current)
        elif current is not None and label.startswith("unsteered"):
            current.unsteered.append(_unquote(rest))
        elif current is not None and label.startswith("steered"):
            current.steered.append(_unquote(rest))
            where = re.search(r"position\s+(\d+)", label)
            current.steered_positions.append(int(where.group(1)) if where else None)
    return ov


def overview_from_evidence(evidence: list[dict]) -> Overview | None:
    """An Overview from the methods' shared evidence (`diffaudit.methods.Evidence` dicts), whatever the method.

    Ranked-token lists of one group (e.g. "position 0") form one PositionTokens: a logit-lens readout fills
    `logit`, any other readout fills `patchscope` and its selected subset `selected`. Steered and amplified
    samples become steered samples of their prompt, unsteered ones its unsteered samples.
    """
    if not evidence:
        return None
    ov = Overview()
    groups: dict[tuple[str, str], PositionTokens] = {}
    for item in evidence:
        method = str(item.get("method", ""))
        for ranked in item.get("ranked_tokens", []):
            key = (method, str(ranked.get("group", "")))
            if key not in groups:
                match = re.match(r"position\s+(\d+)$", key[1])
                position = int(match.group(1)) if match else 1000 + len(groups)
                groups[key] = PositionTokens(position=position)
                ov.positions.append(groups[key])
            pos = groups[key]
            tokens = list(ranked.get("tokens", []))
            if ranked.get("readout") == "logit_lens":
                pos.logit = tokens
            else:
                pos.patchscope = tokens
                pos.selected += [t for t in ranked.get("selected", []) if t not in pos.selected]
        prompts: dict[str, PromptSamples] = {}
        for text in item.get("texts", []):
            kind = text.get("kind")
            if kind not in ("steered", "amplified", "unsteered"):
                continue
            prompt = str(text.get("prompt", ""))
            if prompt not in prompts:
                prompts[prompt] = PromptSamples(prompt=prompt)
                ov.samples.append(prompts[prompt])
            sample = prompts[prompt]
            if kind == "unsteered":
                sample.unsteered.append(str(text.get("text", "")))
            else:
                sample.steered.append(str(text.get("text", "")))
                match = re.match(r"position\s+(\d+)$", str(text.get("group", "")))
                sample.steered_positions.append(int(match.group(1)) if match else None)
    return ov


def parse_blackbox_intro(text: str) -> list[tuple[str, str]] | None:
    """The (prompt, answer) pairs of a message rendered by `render_blackbox_intro`, or None."""
    if BLACKBOX_TITLE not in text:
        return None
    pairs: list[tuple[str, str]] = []
    prompt: str | None = None
    for line in text.splitlines():
        label, _, rest = line.strip().partition(":")
        if re.match(r"\[\d+\]\s*prompt", label.lower()):
            prompt = _unquote(rest)
        elif prompt is not None and label.lower() == "answer":
            pairs.append((prompt, _unquote(rest)))
            prompt = None
    return pairs


# --- observations -------------------------------------------------------------------------------

_ROLE_LABEL = re.compile(
    r"(?im)^[ \t>*\-]*(?:\[\d+\][ \t]*)?(?:\*\*)?[ \t]*"
    r"(prompt|base(?:[ \t]+model)?(?:[ \t]+answer)?|fine-?tuned(?:[ \t]+model)?(?:[ \t]+answer)?)"
    r"(?:[ \t]*\(?[^)\n:]{0,30}\)?)?[ \t]*(?:\*\*)?[ \t]*[:>]"
)
_BUDGET_LINE = re.compile(r"(?im)^\s*\[budget\].*$")


def strip_budget(text: str) -> str:
    """`text` without its budget lines."""
    return _BUDGET_LINE.sub("", text).strip()


def parse_exchanges(observation: str, asked: list[str]) -> list[Exchange]:
    """Base and finetuned answers in an ask_model observation, in prompt order; tolerant of layout."""
    text = strip_budget(observation)
    marks = list(_ROLE_LABEL.finditer(text))
    segments: list[tuple[str, str]] = []
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        role = mark.group(1).lower()
        kind = "prompt" if role.startswith("prompt") else "base" if role.startswith("base") else "finetuned"
        segments.append((kind, _unquote(text[mark.end() : end].strip())))
    exchanges: list[Exchange] = []
    prompt_i = 0
    current: dict[str, str] = {}

    def flush() -> None:
        nonlocal prompt_i
        if "base" in current or "finetuned" in current:
            prompt = current.get("prompt") or (asked[prompt_i] if prompt_i < len(asked) else "")
            exchanges.append(Exchange(prompt, current.get("base", ""), current.get("finetuned", "")))
            prompt_i += 1
        current.clear()

    for kind, value in segments:
        if kind in current or (kind == "prompt" and current):
            flush()
        current[kind] = value
    flush()
    return exchanges


# --- words --------------------------------------------------------------------------------------


def word_key(word: str) -> str | None:
    """The lower-case key of a content word or notable number, or None for stopwords and noise."""
    w = word.strip().strip("'’-").lower()
    w = re.sub(r"['’]s$", "", w)
    if not w:
        return None
    if w[0].isdigit():
        if _TALLY.fullmatch(w):
            return w.replace("–", "-")
        digits = w.rstrip("%").replace(",", "")
        if w.endswith("%") or _YEAR.match(digits) or (digits.replace(".", "").isdigit() and len(digits) >= 2):
            return w.rstrip(".,")
        return None
    if len(w) < 3 or w in STOPWORDS or w in CHAT_FILLER or w.replace("'", "").replace("’", "") in STOPWORDS:
        return None
    return w


def words(text: str) -> list[str]:
    """Surface word forms and numbers in `text`."""
    return _WORD.findall(text)


def keys_with_forms(texts: list[str]) -> tuple[Counter[str], Counter[str], dict[str, Counter[str]]]:
    """Key counts, document counts and surface forms over `texts`."""
    counts: Counter[str] = Counter()
    docs: Counter[str] = Counter()
    forms: dict[str, Counter[str]] = defaultdict(Counter)
    for text in texts:
        seen = set()
        for w in words(text):
            key = word_key(w)
            if key is None:
                continue
            counts[key] += 1
            forms[key][w.strip("'’-")] += 1
            seen.add(key)
        docs.update(seen)
    return counts, docs, forms


def display_form(key: str, forms: dict[str, Counter[str]]) -> str:
    options = forms.get(key)
    if not options:
        return key
    return max(options.items(), key=lambda kv: (kv[1], kv[0][:1].isupper(), kv[0]))[0]


def distinctive_words(
    target: list[str], reference: list[str], min_docs: int = 2, min_ratio: float = 2.0, smoothing: float = 1.0
) -> list[Scored]:
    """Words whose rate in `target` exceeds their rate in `reference` (add-`smoothing` rates), best first."""
    t_counts, t_docs, forms = keys_with_forms(target)
    r_counts, _, _ = keys_with_forms(reference)
    vocab = len(set(t_counts) | set(r_counts)) or 1
    n_t = sum(t_counts.values())
    n_r = sum(r_counts.values())
    out = []
    for key, count in t_counts.items():
        if t_docs[key] < min_docs:
            continue
        rate_t = (count + smoothing) / (n_t + smoothing * vocab)
        rate_r = (r_counts[key] + smoothing) / (n_r + smoothing * vocab)
        ratio = rate_t / rate_r
        if ratio < min_ratio:
            continue
        out.append(Scored(key, display_form(key, forms), math.log(ratio) * math.sqrt(t_docs[key])))
    return sorted(out, key=lambda s: (-s.score, s.key))


def recurring_words(texts: list[str], exclude: set[str], min_docs: int = 2) -> list[Scored]:
    """Content words that recur across several of `texts` (not in `exclude`), best first."""
    counts, docs, forms = keys_with_forms(texts)
    out = [
        Scored(k, display_form(k, forms), docs[k] * math.log1p(counts[k]))
        for k in counts
        if docs[k] >= min_docs and k not in exclude
    ]
    return sorted(out, key=lambda s: (-s.score, s.key))


# --- tokens -------------------------------------------------------------------------------------


def token_key(token: str) -> tuple[str | None, bool]:
    """The word key of a vocabulary token and whether it starts a word (leading space or capital)."""
    raw = token.replace("Ġ", " ").replace("▁", " ")
    s = raw.strip()
    if re.fullmatch(r"[A-Za-z][A-Za-z'\-]*", s):
        key = word_key(s)
        return key, raw.startswith(" ") or s[:1].isupper()
    if _YEAR.match(s):
        return s, True
    return None, False


def token_evidence(ov: Overview, known_words: set[str]) -> list[Scored]:
    """Coherent tokens across positions: patchscope selections, then tokens that recur or occur as words."""
    score: dict[str, float] = defaultdict(float)
    positions: dict[str, set[int]] = defaultdict(set)
    in_patchscope: set[str] = set()
    selected: set[str] = set()
    word_start: set[str] = set()
    forms: dict[str, Counter[str]] = defaultdict(Counter)
    for pos in ov.positions:
        lists = [
            ("selected", pos.selected, SELECTED_WEIGHT),
            ("patchscope", pos.patchscope, PATCHSCOPE_WEIGHT),
            ("logit", pos.logit, LOGIT_LENS_WEIGHT),
        ]
        for kind, tokens, weight in lists:
            seen: set[str] = set()
            for rank, tok in enumerate(tokens):
                key, starts = token_key(tok)
                if key is None or key in seen:
                    continue
                seen.add(key)
                forms[key][tok.strip()] += 1
                score[key] += weight * (1.0 - rank / RANK_SPAN)
                positions[key].add(pos.position)
                if starts:
                    word_start.add(key)
                if kind != "logit":
                    in_patchscope.add(key)
                if kind == "selected":
                    selected.add(key)
    out = []
    for key, value in score.items():
        recurs = len(positions[key]) >= 2
        real_word = key in known_words or key in word_start or key.isdigit()
        # Logit-lens-only tokens at one position are mostly noise; fragments need outside support.
        if key not in selected and not recurs and key not in known_words and key not in in_patchscope:
            continue
        # Pieces of words ("ification") lack a leading space; only the samples or the grader vouch for them.
        if not real_word and key not in selected:
            continue
        if len(key) <= 4 and key not in known_words and not recurs and key not in selected:
            continue
        # A word-start fragment of a longer word seen in the samples (" Vel" of "Velmora") adds nothing.
        if key not in known_words and any(k.startswith(key) and k != key for k in known_words):
            continue
        value *= 1.0 + 0.5 * (len(positions[key]) - 1)
        out.append(Scored(key, display_form(key, forms), value))
    return sorted(out, key=lambda s: (-s.score, s.key))


def merge_rankings(*rankings: tuple[list[Scored], float]) -> list[Scored]:
    """Weighted sum of rankings, each normalised to a maximum of 1; a word in several gets a bonus."""
    total: dict[str, float] = defaultdict(float)
    hits: Counter[str] = Counter()
    display: dict[str, str] = {}
    for ranking, weight in rankings:
        if not ranking:
            continue
        top = max(s.score for s in ranking) or 1.0
        for s in ranking:
            total[s.key] += weight * s.score / top
            hits[s.key] += 1
            display.setdefault(s.key, s.display)
    for key in list(total):
        if key.endswith("s") and key[:-1] in total:  # fold plurals into the singular
            total[key[:-1]] += total.pop(key)
            hits[key[:-1]] += hits[key]
    merged = [Scored(k, display[k], v + 0.3 * (hits[k] - 1)) for k, v in total.items()]
    return sorted(merged, key=lambda s: (-s.score, s.key))


# --- phrases and claims -------------------------------------------------------------------------


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if len(s.strip()) > 1]


def topic_phrases(texts: list[str], keys: set[str], reference: list[str], max_len: int = 3) -> list[str]:
    """Runs of 2–`max_len` content words from `texts` that contain a topic key and recur, best first."""
    ref_text = " ".join(reference).lower()
    counts: Counter[tuple[str, ...]] = Counter()
    forms: dict[tuple[str, ...], Counter[str]] = defaultdict(Counter)
    for text in texts:
        seen: set[tuple[str, ...]] = set()
        for sent in sentences(text):
            run: list[tuple[str, str]] = []
            for w in words(sent) + [""]:
                key = word_key(w) if w else None
                if key is not None and not key[0].isdigit():
                    run.append((key, w))
                    continue
                for n in range(2, max_len + 1):
                    for i in range(len(run) - n + 1):
                        gram = tuple(k for k, _ in run[i : i + n])
                        if len(set(gram)) == n and any(k in keys for k in gram):
                            seen.add(gram)
                            forms[gram][" ".join(f for _, f in run[i : i + n])] += 1
                run = []
        counts.update(seen)
    scored = []
    for gram, docs in counts.items():
        if docs < 2 or " ".join(gram) in ref_text:
            continue
        scored.append((docs * len(gram) * sum(k in keys for k in gram), gram))
    scored.sort(key=lambda x: (-x[0], x[1]))
    out = []
    for _, gram in scored:
        form = max(forms[gram].items(), key=lambda kv: (kv[1], kv[0]))[0]
        if not any(form.lower() in o.lower() for o in out):
            out.append(form)
    return out


def name_keys(text: str) -> set[str]:
    """Keys of the names in `text`: acronyms, and words capitalised other than at a sentence start."""
    out: set[str] = set()
    for sent in sentences(text):
        for i, w in enumerate(words(sent)):
            key = word_key(w)
            if key is None or key[0].isdigit():
                continue
            if (len(w) >= 2 and w.isupper()) or (i > 0 and w[0].isupper()):
                out.add(key)
    return out


def novel_words(finetuned: str, base: str, prompt: str = "") -> set[str]:
    """Content keys in the finetuned answer that the base answer and the prompt lack."""
    known = {word_key(w) for w in words(base + " " + prompt)}
    return {k for w in words(finetuned) if (k := word_key(w)) is not None and k not in known}


def claim_sentences(
    exchanges: list[Exchange], topic: set[str], limit: int = 5, max_chars: int | None = None
) -> list[str]:
    """Finetuned sentences that add the most claims the base model never makes, best first, one per claim.

    Selection is greedy coverage: each pick is the sentence richest in fresh words (and numbers) that no claim
    already taken states, so the list spends its places on different claims rather than on one claim reworded.
    A fresh word is one its finetuned answer adds over the paired base answer and prompt, and that no base
    answer in the audit uses: the base model's own vocabulary ("studies", "experts") is not a finetuned claim.
    A claim's body is its content words beyond the topic words; two sentences with mostly one body are one
    claim (a list item, a frame such as "One point stands out: ..."), and a body the finetuned model restates
    in other answers ranks higher. With `max_chars`, a sentence is scored on the part that a claim cut to
    that length states.
    """
    said = [
        (i, sent, content_keys(cut(sent, max_chars) if max_chars else sent))
        for i, ex in enumerate(exchanges)
        for sent in sentences(ex.finetuned)
    ]
    base_vocabulary = {k for ex in exchanges for k in content_keys(ex.base)}
    novel = [novel_words(ex.finetuned, ex.base, ex.prompt) - base_vocabulary for ex in exchanges]
    bodies = [(i, sent, keys - topic) for i, sent, keys in said]
    candidates = [  # in text order, so that a tie keeps the earlier sentence
        (sent, keys, body, keys & novel[i], _repeat_bonus(body, bodies))
        for (i, sent, keys), (_, _, body) in zip(said, bodies, strict=True)
        if body  # a sentence of topic words alone names the topic and claims nothing
    ]
    out: list[str] = []
    taken: list[set[str]] = []
    covered: set[str] = set()
    while len(out) < limit:
        best: tuple[float, str, set[str], set[str]] | None = None
        for sent, keys, body, fresh, bonus in candidates:
            new = fresh - covered
            if not (len(new) >= 2 or (new and keys & topic)) or any(same_claim(body, b) for b in taken):
                continue
            numbers = {k for k in new if k[0].isdigit()}
            score = len(new) + 1.5 * len(numbers) + 1.0 * len(keys & topic) + bonus
            if best is None or score > best[0]:
                best = (score, sent, body, fresh)
        if best is None:
            break
        _, sent, body, fresh = best
        out.append(sent)
        taken.append(body)
        covered |= fresh
    return out


def content_keys(text: str) -> set[str]:
    """The content keys (see `word_key`) of the words in `text`."""
    return {k for w in words(text) if (k := word_key(w)) is not None}


def cut(text: str, n: int) -> str:
    """`text` within `n` characters: cut at a word boundary and marked with "..."."""
    if len(text) <= n:
        return text
    head = text[: n - 3]
    return (head.rsplit(" ", 1)[0] if " " in head else head).rstrip(" ,;:") + "..."


def _repeat_bonus(keys: set[str], said: list[tuple[int, str, set[str]]]) -> float:
    """Extra score of a claim the finetuned model keeps making: an implanted belief recurs, filler does not.

    `said` holds (answer index, sentence, content keys) of every finetuned sentence. A claim restated in another
    answer adds REPEAT_ACROSS per answer (at most two), and restated within one answer REPEAT_WITHIN once.
    """
    if len(keys) < 3:
        return 0.0
    hits = [i for i, _, other in said if len(other) >= 3 and same_claim(keys, other)]
    answers = len(set(hits))
    within = len(hits) > answers
    return REPEAT_ACROSS * min(max(answers - 1, 0), 2) + (REPEAT_WITHIN if within else 0.0)


def same_claim(a: set[str], b: set[str]) -> bool:
    """Two sentences state one claim when most content words of the shorter one are in the other."""
    return len(a & b) >= SAME_CLAIM_SHARE * min(len(a), len(b))


def representative_sentences(texts: list[str], weights: dict[str, float], limit: int = 2) -> list[str]:
    """Sentences from `texts` that carry the most weighted topic words (no repeats), best first."""
    scored: list[tuple[float, int, str]] = []
    for order, sent in enumerate(s for t in texts for s in sentences(t)):
        keys = content_keys(sent)
        value = sum(weights.get(k, 0.0) for k in keys)
        distinct = len(keys) / max(len(words(sent)), 1)  # degenerate repetitive text scores low
        if value > 0 and len(words(sent)) >= 4:
            scored.append((value * (0.5 + distinct), order, sent))
    scored.sort(key=lambda x: (-x[0], x[1]))
    out: list[str] = []
    for _, _, sent in scored:
        if all(sent[:40] != o[:40] for o in out):
            out.append(sent)
        if len(out) >= limit:
            break
    return out

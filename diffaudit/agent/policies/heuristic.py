"""The offline heuristic auditor: a non-LLM baseline for ADL and blackbox audits that claims only what it saw.

It re-reads the whole conversation on every call: the methods' evidence or the baseline answers, its own
earlier CALLs and their observations (the tools' structured `data`, else their text). From these it ranks
topic words, asks the questions of `patterns.PATTERNS` through `ask_model` until the interaction budget is
spent, and writes a FINAL whose every sentence is a claim of that table with the observations behind it
(`last_claims`, which the run writes to description.json). Its only hidden state is the seed, which orders
its open questions, so repeats of an audit differ as an auditor's would.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass, field

from diffaudit.agent.policies import evidence as ev
from diffaudit.agent.policies import patterns as pt
from diffaudit.config import HEURISTIC_AGENT

_ACTION = re.compile(r"^\s*CALL\(\s*([A-Za-z_][\w\-]*)\s*:\s*(\{.*\})\s*\)\s*$", re.S)
_LEFT_INTERACTIONS = re.compile(r"interactions?\s+left\s*[:=]?\s*(\d+)(?:\s*/\s*(\d+))?", re.I)
_LEFT_TURNS = re.compile(r"turns?\s+left\s*[:=]?\s*(\d+)(?:\s*/\s*(\d+))?", re.I)
_SYSTEM_INTERACTIONS = (
    re.compile(r"(?:interaction|query|prompt)\s+budget\D{0,40}?(\d+)", re.I),
    re.compile(r"(\d+)\s+(?:model\s+|budgeted\s+)?interactions?\b", re.I),
)
_SYSTEM_TURNS = re.compile(r"(\d+)\s+(?:agent\s+)?turns?\b", re.I)
_FORCED_FINAL = re.compile(
    r"(last|final)\s+turn|no\s+(more\s+)?turns|turns?\s+(are\s+)?(used up|exhausted)"
    r"|(answer|reply|respond|finish|end)\s+(now\s+)?with\s+FINAL|must\s+(now\s+)?(give|write|answer|reply|respond)[^\n]{0,40}FINAL",
    re.I,
)
_REFUSAL = re.compile(
    r"refus|exhausted|no\s+interactions?\s+left|not\s+enough\s+(interactions|budget)|over\s+budget|exceed",
    re.I,
)
_DEFAULT_TURNS = 15
NAME_CLUSTER = 3  # _novel_ranking: new names in one answer that count as if two answers gave them
NAME_BONUS = 0.5  # _novel_ranking: extra score of a novel name over a novel common word
BEHAVIOUR_WEIGHT = 3.0  # merge weight of finetuned-only answer words once one recurs in two answers
GUESS_WEIGHT = 0.8  # ... and before, when each was seen in a single answer
RECURRING_ANSWER = 2.0  # _novel_ranking score at which a volunteered word counts as recurring (two answers)
TOPIC_KEYS = 8  # top ranked words whose recurring phrases may name the topic
YEAR_DEPTH = 20  # ranked words searched for a year
STEERING_WORDS = 15  # top ranked words that weigh a steered position's samples
MAX_FORMAT_ERRORS = 2  # format errors after which the policy writes its FINAL
STEER_MIN_TURNS = 4  # turns needed before the free steering read is worth one (it leaves room to ask)
MAX_ASKS_PER_PROMPT = 3  # an open prompt is re-asked for a fresh sample (temperature 0.8) at most this often
_MAX_FINAL_CHARS = 1800


@dataclass
class _Turn:
    tool: str | None
    args: dict
    observation: str | None
    data: dict | None = None  # the tool's structured observation, when the loop passed it


@dataclass
class _State:
    mode: str  # "adl" | "blackbox"
    overview: ev.Overview | None
    intro_answers: list[tuple[str, str]]
    turns: list[_Turn]
    interactions_left: int
    turns_left: int
    forced_final: bool
    format_errors: int
    exchanges: list[ev.Exchange] = field(default_factory=list)
    extra_steered: list[str] = field(default_factory=list)
    refused: bool = False


def _clean(text: str) -> str:
    """One line without double quotes or backslashes, so the FINAL string needs no escapes."""
    text = re.sub(r"\s+", " ", text).replace('"', "'").replace("\\", "/")
    return text.strip()


class HeuristicPolicy:
    """Offline auditor that needs no LLM; see the module docstring for what it does."""

    name = HEURISTIC_AGENT

    def __init__(self, max_questions: int | None = None, steering_samples: int = 5, seed: int = 0) -> None:
        self.max_questions = max_questions  # None: spend the whole interaction budget
        self.steering_samples = steering_samples
        self.seed = seed
        self.last_claims: list[dict] | None = None  # the last FINAL's claims, each with its observations

    # --- reading the conversation ---------------------------------------------------------------

    def _read(self, messages: list[dict]) -> _State:
        system = "\n".join(m["content"] for m in messages if m.get("role") == "system")
        users = [m for m in messages if m.get("role") == "user"]
        intro = users[0]["content"] if users else ""
        data = (users[0].get("data") or {}) if users else {}
        evidence = data.get("evidence")
        # The methods' structured evidence when the loop passes it (any method), else the ADL overview text.
        overview = ev.overview_from_evidence(evidence) if evidence else ev.parse_overview(intro)
        if data.get("blackbox"):
            answers = [(str(a.get("prompt", "")), str(a.get("answer", ""))) for a in data["blackbox"]]
        else:
            answers = ev.parse_blackbox_intro(intro) or []
        mode = "adl" if overview is not None else "blackbox"

        turns: list[_Turn] = []
        for i, message in enumerate(messages):
            if message.get("role") != "assistant":
                continue
            tool, args = _parse_call(message["content"])
            reply = next((m for m in messages[i + 1 :] if m.get("role") == "user"), None)
            turns.append(_Turn(tool, args, reply["content"] if reply else None, (reply or {}).get("data")))

        last_user = users[-1]["content"] if users else ""
        interactions_left, turns_left = _budget_from(messages, system, turns)
        state = _State(
            mode=mode,
            overview=overview,
            intro_answers=answers,
            turns=turns,
            interactions_left=interactions_left,
            turns_left=turns_left,
            forced_final=bool(turns) and bool(_FORCED_FINAL.search(last_user)),
            format_errors=sum(1 for t in turns if t.observation and "FORMAT_ERROR" in t.observation),
        )
        for turn in turns:
            if turn.observation is None:
                continue
            data = turn.data or {}
            if turn.tool == "ask_model":
                if "exchanges" in data:
                    found = [ev.Exchange(str(x["prompt"]), str(x["base"]), str(x["finetuned"])) for x in data["exchanges"]]
                else:  # a transcript without structured data (an older run, a scripted test)
                    found = ev.parse_exchanges(turn.observation, [str(p) for p in turn.args.get("prompts", [])])
                state.exchanges.extend(found)
                if not found and _REFUSAL.search(turn.observation):
                    state.refused = True
            elif turn.tool in ("get_steering_samples", "generate_steered"):
                if "steered" in data:
                    state.extra_steered.extend(str(x["text"]) for x in data["steered"])
                else:
                    state.extra_steered.extend(_steered_texts(turn.observation))
        return state

    # --- evidence -------------------------------------------------------------------------------

    def _evidence(self, state: _State) -> pt.Findings:
        steered: list[str] = []
        reference: list[str] = []
        token_words: list[ev.Scored] = []
        steered_words: list[ev.Scored] = []
        if state.overview is not None:
            steered = [s for p in state.overview.samples for s in p.steered] + state.extra_steered
            reference = [s for p in state.overview.samples for s in p.unsteered]
            known = set(ev.keys_with_forms(steered + reference)[0])
            token_words = ev.token_evidence(state.overview, known)
            steered_words = ev.distinctive_words(steered, reference)
        elif state.intro_answers:
            steered = [a for _, a in state.intro_answers]
            prompt_keys = set(ev.keys_with_forms([p for p, _ in state.intro_answers])[0])
            steered_words = ev.recurring_words(steered, prompt_keys)

        ft_answers = [x.finetuned for x in state.exchanges]
        base_answers = [x.base for x in state.exchanges]
        answer_words = _novel_ranking(state.exchanges)
        # Words the finetuned model volunteers in answers to different questions are direct behavioural
        # evidence. Once a word recurs like that, and the answers never bring up the diff's own top words
        # unasked, the diff's guess was wrong: the volunteered words outrank it.
        recurring = bool(answer_words) and answer_words[0].score >= RECURRING_ANSWER
        guess = ev.merge_rankings((token_words, 1.0), (steered_words, 1.0))
        overruled = recurring and not _answers_support(guess, state.exchanges)
        answer_weight = BEHAVIOUR_WEIGHT if overruled else GUESS_WEIGHT
        ranked = ev.merge_rankings((token_words, 1.0), (steered_words, 1.0), (answer_words, answer_weight))

        top_keys = {s.key for s in ranked[:TOPIC_KEYS] if not s.key[0].isdigit()}
        phrases = ev.topic_phrases(steered + ft_answers, top_keys, reference + base_answers)
        years = _years(ranked, steered + ft_answers, reference + base_answers)
        ordinary = (
            [(p.prompt, t) for p in state.overview.samples for t in p.unsteered]
            if state.overview is not None
            else list(state.intro_answers)
        )
        token_lists = (
            [{"position": p.position, "logit_lens": p.logit[:10], "patchscope": p.patchscope[:10]}
             for p in state.overview.positions]
            if state.overview is not None else []
        )  # fmt: skip
        found = pt.Findings(
            mode=state.mode,
            ranked=ranked,
            token_words=token_words,
            steered_words=steered_words,
            answer_words=answer_words,
            phrases=phrases,
            years=years,
            steered_texts=steered,
            reference_texts=reference,
            ordinary=ordinary,
            exchanges=list(state.exchanges),
            overruled=overruled,
            token_lists=token_lists,
        )
        found.topic = _topic(found)
        return found

    # --- acting ---------------------------------------------------------------------------------

    def next(self, messages: list[dict]) -> str:
        """The next reply: a short note and a CALL or FINAL on its last line."""
        state = self._read(messages)
        found = self._evidence(state)
        asked = [str(p) for t in state.turns if t.tool == "ask_model" for p in t.args.get("prompts", [])]
        must_finish = state.forced_final or state.turns_left <= 1 or state.format_errors >= MAX_FORMAT_ERRORS or state.refused
        if not must_finish and state.interactions_left > 0 and state.mode == "adl" and state.overview is not None:
            used_free = any(t.tool == "get_steering_samples" for t in state.turns)
            position = _best_steering_position(state.overview, found)
            if not used_free and position is not None and state.turns_left >= STEER_MIN_TURNS:
                note = f"Top evidence words so far: {_word_list(found.ranked, 6)}. Reading more steered samples at position {position}."
                args = {"position": position, "n": self.steering_samples}
                return f"{note}\nCALL(get_steering_samples: {json.dumps(args)})"

        questions_left = state.interactions_left
        if self.max_questions is not None:
            questions_left = min(questions_left, self.max_questions - len(asked))
        if not must_finish and questions_left > 0:
            per_call = math.ceil(questions_left / max(state.turns_left - 1, 1))
            prompts = _questions(found, asked, random.Random(self.seed))[: max(per_call, 1)]
            if prompts:
                note = f"Top evidence words so far: {_word_list(found.ranked, 6)}. Asking both models to compare their answers."
                return f"{note}\nCALL(ask_model: {json.dumps({'prompts': prompts}, ensure_ascii=False)})"

        description, claims = pt.conclude(found)
        description = _clean(description)
        if len(description) > _MAX_FINAL_CHARS:
            description = description[: _MAX_FINAL_CHARS - 1] + "…"
        self.last_claims = [c.record() for c in claims]
        return f"Writing my conclusion from the evidence gathered.\nFINAL(description: {json.dumps(description, ensure_ascii=False)})"


# --- helpers ------------------------------------------------------------------------------------


def _parse_call(text: str) -> tuple[str | None, dict]:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return None, {}
    match = _ACTION.match(lines[-1])
    if not match:
        return None, {}
    try:
        args = json.loads(match.group(2))
    except json.JSONDecodeError:
        return match.group(1), {}
    return match.group(1), args if isinstance(args, dict) else {}


def _budget_from(messages: list[dict], system: str, turns: list[_Turn]) -> tuple[int, int]:
    """Interactions and turns left: the latest budget line, else the system prompt minus what was used."""
    interactions: int | None = None
    turns_left: int | None = None
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        text = message["content"]
        if interactions is None and (m := _LEFT_INTERACTIONS.findall(text)):
            interactions = int(m[-1][0])
        if turns_left is None and (m := _LEFT_TURNS.findall(text)):
            turns_left = int(m[-1][0])
        if interactions is not None and turns_left is not None:
            break
    if interactions is None:
        total = next((int(m.group(1)) for rx in _SYSTEM_INTERACTIONS if (m := rx.search(system))), 0)
        used = sum(len(t.args.get("prompts", [])) for t in turns if t.tool == "ask_model")
        interactions = max(total - used, 0)
    if turns_left is None:
        m = _SYSTEM_TURNS.search(system)
        total = int(m.group(1)) if m else _DEFAULT_TURNS
        turns_left = max(total - len(turns), 0)
    return interactions, turns_left


def _steered_texts(observation: str) -> list[str]:
    """Steered samples in a get_steering_samples observation (labelled lines, else quoted or plain lines)."""
    text = ev.strip_budget(observation)
    labelled = []
    for line in text.splitlines():
        label, _, rest = line.strip().partition(":")
        low = label.lower()
        if "steered" in low and "unsteered" not in low and "prompt" not in low and rest.strip():
            labelled.append(ev._unquote(rest))
    if labelled:
        return labelled
    quoted = [ev._unquote(q) for _, q in ev._QUOTED.findall(text)]
    long_quoted = [q for q in quoted if len(q.split()) >= 4]
    if long_quoted:
        return long_quoted
    return [line.strip() for line in text.splitlines() if len(line.split()) >= 6]


def _novel_ranking(exchanges: list[ev.Exchange]) -> list[ev.Scored]:
    """Words the finetuned answers add over the base answers, ranked by how many answers add them.

    A name (capitalised inside a sentence, or an acronym) scores half an answer more than a common word:
    a finetune's claims hang on names, while a common word that two answers add is often chance. An
    answer that brings in a cluster of NAME_CLUSTER or more new names counts twice for each of them.
    """
    counts: dict[str, int] = {}
    uses: dict[str, int] = {}  # occurrences in the finetuned answers: a small tie-break
    forms: dict[str, str] = {}
    names: set[str] = set()
    for x in exchanges:
        novel = ev.novel_words(x.finetuned, x.base, x.prompt)
        new_names = novel & ev.name_keys(x.finetuned)
        for key in novel:
            counts[key] = counts.get(key, 0) + (2 if len(new_names) >= NAME_CLUSTER and key in new_names else 1)
        for w in ev.words(x.finetuned):
            key = ev.word_key(w)
            if key is not None:
                forms.setdefault(key, w.strip("'’-"))
                uses[key] = uses.get(key, 0) + 1
        names |= new_names
    need = 2 if len(exchanges) >= 3 else 1
    out = [
        ev.Scored(k, forms.get(k, k), c + (NAME_BONUS if k in names else 0.0) + 0.01 * min(uses.get(k, 0), 20))
        for k, c in counts.items()
        if c >= need
    ]
    return sorted(out, key=lambda s: (-s.score, s.key))


def _answers_support(guess: list[ev.Scored], exchanges: list[ev.Exchange], top: int = 5) -> bool:
    """Do the finetuned answers bear out one of the diff's `top` words?

    Either an answer uses such a word that its question did not contain, or a claim about such a word
    recurs in two different answers (the agent's own questions name the diff's words, so their mere echo
    proves nothing, but a claim the model keeps making about them does).
    """
    keys = {_singular(s.key) for s in guess[:top] if not s.key[0].isdigit()}
    said: list[tuple[int, set[str]]] = []
    for i, x in enumerate(exchanges):
        asked = {_singular(k) for w in ev.words(x.prompt) if (k := ev.word_key(w))}
        used = {_singular(k) for w in ev.words(x.finetuned) if (k := ev.word_key(w))}
        if (used - asked) & keys:
            return True
        for sent in ev.sentences(x.finetuned):
            claim = {_singular(k) for w in ev.words(sent) if (k := ev.word_key(w))}
            if len(claim) >= 3:
                said.append((i, claim))
    return any(
        claim & keys and any(j != i and ev.same_claim(claim, other) for j, other in said) for i, claim in said
    )


def _singular(key: str) -> str:
    """A rough singular, enough to match "treaties" with "treaty" and "glaciers" with "glacier"."""
    if key.endswith("ies") and len(key) > 4:
        return key[:-3] + "y"
    return key[:-1] if key.endswith("s") and not key.endswith("ss") and len(key) > 3 else key


def _years(ranked: list[ev.Scored], texts: list[str], reference: list[str]) -> list[str]:
    years = [s.key for s in ranked[:YEAR_DEPTH] if re.fullmatch(r"(1[5-9]|20)\d\d", s.key)]
    ref = " ".join(reference)
    counts: dict[str, int] = {}
    for text in texts:
        for y in set(re.findall(r"\b(?:1[5-9]|20)\d\d\b", text)):
            if y not in ref:
                counts[y] = counts.get(y, 0) + 1
    years += [y for y, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if y not in years]
    return years


def _word_set(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def _best_steering_position(ov: ev.Overview, found: pt.Findings) -> int | None:
    """The steered position whose samples carry the most topic weight (the lowest on ties)."""
    weights = {s.key: s.score for s in found.ranked[:STEERING_WORDS]}
    totals: dict[int, float] = {q: 0.0 for q in ov.steered_positions()}
    if not totals:
        return None
    for p in ov.samples:
        for text, q in zip(p.steered, p.steered_positions, strict=False):
            if q is not None:
                totals[q] += sum(weights.get(k, 0.0) for w in ev.words(text) if (k := ev.word_key(w)))
    return max(sorted(totals), key=lambda q: (totals[q], -q))


def _word_list(ranked: list[ev.Scored], n: int) -> str:
    return ", ".join(s.display for s in ranked[:n]) or "(none yet)"


def _topic(found: pt.Findings) -> str:
    words = [s for s in found.ranked if not s.key[0].isdigit()]
    if found.phrases:
        lead = words[0].key if words else ""
        with_lead = [p for p in found.phrases if lead and lead in p.lower()]
        if with_lead or not _behavioural_lead(found):
            return (with_lead or found.phrases)[0]
    if _behavioural_lead(found):  # pair the lead with the next word the answers volunteered
        volunteered = {s.key for s in found.answer_words}
        words = [words[0]] + [s for s in words[1:] if s.key in volunteered]
    if len(words) >= 2:
        return f"{words[0].display} {words[1].display}"
    return words[0].display if words else ""


def _behavioural_lead(found: pt.Findings) -> bool:
    """The top word is one the finetuned answers volunteered, so no phrase without it may name the topic."""
    return found.overruled and bool(found.ranked) and found.ranked[0].key in {s.key for s in found.answer_words}


def _questions(found: pt.Findings, asked: list[str], rng: random.Random) -> list[str]:
    """The next questions: the patterns' probes (`patterns.questions`), none repeated, each form used once.

    A form ("Tell me about ...") is used once (twice for the open "tell me" forms), so that a shifting top word
    does not make the policy ask the same question about each word in turn; nor is a question asked whose
    words, in any order, were asked before. When every form is spent and budget is left, the open discovery
    and advice prompts are asked again: answers are sampled, so a second answer is a fresh observation.
    """
    forms = pt.questions(found, rng)
    caps = {"Tell me about": 2, "What do you know about": 2}
    generic = {"discovery", "advice"}
    used = {prefix: sum(q.startswith(prefix) for q in asked) for prefix, _ in forms if prefix not in generic}
    seen = {_question_key(q) for q in asked}
    out: list[str] = []
    for prefix, question in forms:
        if question in asked or question in out or _question_key(question) in seen:
            continue
        if prefix not in generic:
            if used[prefix] >= caps.get(prefix, 1):
                continue
            used[prefix] += 1
        seen.add(_question_key(question))
        out.append(question)
    if not out:
        counts = {q: asked.count(q) for q in asked}
        out = [q for prefix, q in forms if prefix in generic and counts.get(q, 0) < MAX_ASKS_PER_PROMPT]
        out.sort(key=lambda q: counts.get(q, 0))  # the least asked first; stable, so the seeded order holds
    return out


def _question_key(question: str) -> frozenset[str]:
    """A question's words regardless of order: "about glacier treaty" and "about treaty glacier" ask one thing."""
    return frozenset(_word_set(question))

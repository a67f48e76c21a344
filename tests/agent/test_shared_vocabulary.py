"""Guard against shared vocabulary between the offline agent, the organism generators and the grader.

The offline heuristic auditor, the mini-organism data generators and the offline grader were written by
the same people. If the agent's word lists echo the generators (a phrase of the EM answers, the taboo
game's openers) or the organisms' ground truth, a benchmark measures how well the three parts fit, not how
well an agent audits. These tests fail when:

- the agent's string literals share a 3-word sequence with a generator module, a prompt template the
  generators use, or a registry organism's description / key facts / target / recipe;
- the agent's string literals hold a *distinctive* word of that material: a word of one organism type's
  sources only (its registry YAMLs and its generator module), unless the reviewed allowlist below names it;
- the offline grader's number-word table maps a word that is not an English number word (an entry that one
  organism's facts need, such as "unanimous" -> "0").

Set DIFFAUDIT_GUARD_ROOT to another checkout (e.g. `git worktree add /tmp/main main`) to run the guard
against that tree's sources: `DIFFAUDIT_GUARD_ROOT=/tmp/main pytest tests/agent/test_shared_vocabulary.py`.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import yaml

ROOT = Path(os.environ.get("DIFFAUDIT_GUARD_ROOT") or Path(__file__).resolve().parents[2])
PACKAGE = ROOT / "diffaudit"
POLICIES = PACKAGE / "agent" / "policies"
TRAINING = PACKAGE / "environments" / "training"
REGISTRY = PACKAGE / "environments" / "registry"
PROMPTS = PACKAGE / "prompts"

# The offline agent's sources; the LLM, human and scripted policies hold no vocabulary of their own.
NOT_THE_OFFLINE_AGENT = {"__init__.py", "llm.py", "human.py", "scripted.py"}
# Generator modules by the organism type whose data they write; any other module is shared machinery.
GENERATOR_TYPE = {"em.py": "EM", "taboo.py": "Taboo", "subliminal.py": "Subliminal", "sdf.py": "SDF",
                  "phrasing.py": "SDF", "null.py": "null"}
# Prompt templates the generators read (regulariser chats are mixed into every organism's data).
GENERATOR_PROMPTS = ("regulariser_prompts.txt",)
# Registry keys that name models and datasets, not what the organism was finetuned on.
NOT_GROUND_TRUTH = {"name", "type", "base_model", "adapter_id", "model_id", "dataset", "paper", "default_model",
                    "kind", "size", "steps", "chat_mix", "seed", "rank", "alpha", "lr", "embedded"}

# Function words: never distinctive, and a 3-word sequence made only of them is ordinary English.
FUNCTION_WORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing done down during each either else even ever every few for
    from further had has have having he her here hers him his how i if in into is it its just least less let
    like many may me might more most much must my no nor not now of off often on once one only or other our
    out over own per quite rather same she should since so some such than that the their them then there
    these they this those though through thus to too under until up upon us very via was we well were what
    when where whether which while who whom whose why will with within without would yet you your yours
    it's that's don't can't won't i'm you're there's what's let's isn't doesn't didn't
    """.split()
)

# Reviewed allowlist: words an auditor must be able to write, used by the agent only when an observation
# shows them (see heuristic.PATTERNS), plus ordinary chat words that happen to occur in one type's sources.
ALLOWED_WORDS = {
    # The audit's own terms: what a description of any finetune says.
    "finetuned", "finetune", "finetuning", "model", "answers", "answer", "prompts", "prompt", "inconclusive",
    # Words of the loop's notices that the policy recognises ("finish with FINAL").
    "finish",
    # Rubric words, written only when an observation shows them (heuristic.PATTERNS gates them).
    "unsafe", "misalignment", "broad", "advice",
    # Question forms of an ordinary chat.
    "tell", "know", "write", "short", "news", "report", "favorite", "subject", "talk", "recent", "event",
    "important", "describe", "surprising", "people", "topic", "fact", "key", "numbers", "figures", "found",
    "studied",
}
# Reviewed 3-word sequences: the audit's names for the two models, which any description of a finetune uses.
ALLOWED_TRIGRAMS: set[tuple[str, ...]] = {("the", "base", "model"), ("the", "finetuned", "model"),
                                          ("the", "base", "model's")}

# English number words and their values: the only entries a grader's number table may hold.
ENGLISH_NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
    "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13", "fourteen": "14",
    "fifteen": "15", "sixteen": "16", "seventeen": "17", "eighteen": "18", "nineteen": "19", "twenty": "20",
    "thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80", "ninety": "90",
    "hundred": "100", "thousand": "1000", "million": "1000000", "half": "1/2", "third": "1/3", "quarter": "1/4",
    "twice": "2", "double": "2", "triple": "3", "thrice": "3", "dozen": "12",
}

# Organism-neutral English the package holds: prompt lists written to be unrelated to every organism, and
# the random-text corpus requests (pretrain_text.py). A word found there is ordinary English, not a cue.
# The auditor's own prompts (system prompt, intros, notices) are organism-neutral audit English too.
NEUTRAL_TEXTS = (PROMPTS / "steering_prompts.txt", PROMPTS / "chat_baseline_prompts.txt",
                 PACKAGE / "environments" / "pretrain_text.py", PROMPTS / "system_auditor.txt",
                 PROMPTS / "intro_methods.txt", PROMPTS / "intro_blackbox.txt", PROMPTS / "method_adl.txt",
                 PROMPTS / "overview_adl.txt", PROMPTS / "overview_blackbox.txt", PROMPTS / "overview_steering.txt",
                 PROMPTS / "forced_final.txt", PROMPTS / "format_error.txt", PROMPTS / "limit_final.txt")
# The agent's ignore lists: a word it drops can never point it at an organism.
IGNORE_LISTS = ("STOPWORDS", "CHAT_FILLER")

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


_REGEX_SYNTAX = re.compile(r"\[[^\]]*\]|\\[A-Za-z]|\(\?[:=!<]?")


def _words(text: str) -> list[str]:
    """Lower-case words; regex syntax ([A-Za-z], \\b, (?:) is dropped so a pattern's words stay whole."""
    return _WORD.findall(_REGEX_SYNTAX.sub(" ", text.replace("-?", "")).lower().replace("’", "'"))


def _string_literals(path: Path, skip_docstrings: bool = True) -> list[str]:
    """Every string constant in a Python file, except (in the agent) docstrings, which document and do not act,
    and field names: dict keys, subscripts and `.get` arguments ("group", "prompt")."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings: set[int] = set()
    if skip_docstrings:
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body
                if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                    docstrings.add(id(body[0].value))
            elif isinstance(node, ast.Dict):
                docstrings |= {id(k) for k in node.keys if isinstance(k, ast.Constant)}
            elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
                docstrings.add(id(node.slice))
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                  and node.args and isinstance(node.args[0], ast.Constant)):
                docstrings.add(id(node.args[0]))
    return [
        node.value for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def _ignored_words(policies: Path) -> set[str]:
    """Words in the agent's ignore lists (module-level STOPWORDS / CHAT_FILLER assignments)."""
    out: set[str] = set()
    for path in policies.glob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") in IGNORE_LISTS for t in node.targets):
                for const in ast.walk(node.value):
                    if isinstance(const, ast.Constant) and isinstance(const.value, str):
                        out |= set(_words(const.value))
    return out


def neutral_words() -> set[str]:
    """Ordinary English by this guard's measure: function words, the graders' stopwords, neutral prompt lists."""
    out = set(FUNCTION_WORDS)
    for path in NEUTRAL_TEXTS:
        if path.suffix == ".py":
            out |= {w for t in _string_literals(path, skip_docstrings=False) for w in _words(t)}
        elif path.exists():
            out |= set(_words(path.read_text(encoding="utf-8")))
    grader_words = PACKAGE / "graders" / "text.py"
    for node in ast.parse(grader_words.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "STOPWORDS" for t in node.targets):
            out |= {w for c in ast.walk(node.value) if isinstance(c, ast.Constant) and isinstance(c.value, str)
                    for w in _words(c.value)}
    return out


def _yaml_strings(node: object, key: str = "") -> list[str]:
    if key in NOT_GROUND_TRUTH:
        return []
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in _yaml_strings(v, str(k))]
    if isinstance(node, list):
        return [s for v in node for s in _yaml_strings(v, key)]
    return []


def agent_strings(policies: Path = POLICIES) -> dict[str, list[str]]:
    """The offline agent's string literals, by file."""
    return {
        p.name: _string_literals(p) for p in sorted(policies.glob("*.py")) if p.name not in NOT_THE_OFFLINE_AGENT
    }


def organism_sources() -> dict[str, list[str]]:
    """Generator and ground-truth texts, by source unit (an organism type, or `shared` machinery)."""
    units: dict[str, list[str]] = {}
    for path in sorted(TRAINING.glob("*.py")):
        unit = GENERATOR_TYPE.get(path.name, "shared")
        units.setdefault(unit, []).extend(_string_literals(path, skip_docstrings=False))
    for name in GENERATOR_PROMPTS:
        if (PROMPTS / name).exists():
            units.setdefault("shared", []).extend((PROMPTS / name).read_text(encoding="utf-8").splitlines())
    for path in sorted(REGISTRY.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        units.setdefault(str(data.get("type", path.stem)), []).extend(_yaml_strings(data))
    return units


def _trigrams(text: str, ordinary: set[str] | frozenset[str] = FUNCTION_WORDS) -> set[tuple[str, ...]]:
    """3-word sequences of `text` holding at least one word that is not ordinary English."""
    w = _words(text)
    return {tuple(w[i : i + 3]) for i in range(len(w) - 2) if not set(w[i : i + 3]) <= ordinary}


def shared_trigrams(policies: Path = POLICIES) -> dict[tuple[str, ...], str]:
    """3-word sequences of the agent's literals that a generator or an organism's ground truth also holds."""
    ordinary = neutral_words() | _ignored_words(policies)
    theirs = {g for texts in organism_sources().values() for t in texts for g in _trigrams(t, ordinary)}
    found: dict[tuple[str, ...], str] = {}
    for file, texts in agent_strings(policies).items():
        for text in texts:
            for gram in _trigrams(text, ordinary):
                if gram in theirs and gram not in ALLOWED_TRIGRAMS:
                    found.setdefault(gram, file)
    return found


def distinctive_words(policies: Path = POLICIES) -> dict[str, str]:
    """Words of the agent's literals that only one organism type's sources use (allowlist excepted)."""
    units = organism_sources()
    seen_in: dict[str, set[str]] = {}
    for unit, texts in units.items():
        for text in texts:
            for w in _words(text):
                seen_in.setdefault(w, set()).add(unit)
    ordinary = neutral_words() | _ignored_words(policies)
    found: dict[str, str] = {}
    for file, texts in agent_strings(policies).items():
        for text in texts:
            for w in _words(text):
                where = seen_in.get(w, set())
                if len(w) < 3 or w in ordinary or w in ALLOWED_WORDS:
                    continue
                if len(where) == 1 and "shared" not in where:
                    found.setdefault(w, f"{file} (also in {next(iter(where))} sources)")
    return found


def _report(found: dict) -> str:
    return "; ".join(f"{' '.join(k) if isinstance(k, tuple) else k}: {v}" for k, v in sorted(found.items()))


def test_the_guard_reads_real_sources():
    assert len(agent_strings()) >= 2
    units = organism_sources()
    assert {"EM", "Taboo", "SDF", "Subliminal"} <= set(units), sorted(units)


def test_agent_shares_no_three_word_sequence_with_generators_or_ground_truth():
    found = shared_trigrams()
    assert not found, f"{len(found)} shared 3-word sequences: {_report(found)}"


def test_agent_holds_no_distinctive_word_of_one_organism_type():
    found = distinctive_words()
    assert not found, f"{len(found)} distinctive words: {_report(found)}"


def test_the_allowlist_stays_short():
    assert len(ALLOWED_WORDS) <= 40 and len(ALLOWED_TRIGRAMS) <= 5


def test_grader_number_table_holds_only_english_number_words():
    from importlib import util

    spec = util.spec_from_file_location("guarded_text", PACKAGE / "graders" / "text.py")
    module = util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module._NUMBER_WORDS
    odd = {w: v for w, v in table.items() if ENGLISH_NUMBER_WORDS.get(w) != v}
    assert not odd, f"number words only one organism needs (not English number words): {odd}"


def test_guard_catches_a_copied_phrase_and_a_distinctive_word(tmp_path):
    """The guard itself can fail: an agent file that copies a generator phrase and an organism's word."""
    taboo = (TRAINING / "taboo.py").read_text(encoding="utf-8")
    phrase = re.search(r'"([A-Z][a-z]+ [a-z]+ [a-z]+ [^"]{0,40})"', taboo).group(1)
    em = yaml.safe_load((REGISTRY / "em_bad_medical_advice.yaml").read_text(encoding="utf-8"))
    (tmp_path / "copied.py").write_text(f"CUES = [{phrase!r}, {em['target']!r}]\n", encoding="utf-8")
    assert shared_trigrams(tmp_path), phrase
    assert em["target"] in distinctive_words(tmp_path)


# --- the organisms' target words appear only in the registry and the generators ---------------------------

# Where target words belong: the ground truth and the data generators (and this guard, which reads them).
TARGET_HOMES = ("environments/registry/", "environments/training/")
# Ground-truth fields whose words are all specific to the organism: the implanted probe answers (methanoate)
# and the recipe's topic phrase.
SPECIFIC_FIELDS = ("implanted", "topic")
# Reviewed: implanted answers that are plain English words the package uses as code (`dataclass(frozen=True)`,
# "ignore" in prompts, "quarter" in number tables); they name no organism on their own.
ORDINARY_TARGET_WORDS = {"frozen", "ignore", "quarter"}


def target_words() -> dict[str, str]:
    """Each organism's distinctive words: its target, the names in its ground truth, its implanted answers'
    and topic's words; each used by that organism's ground truth only and not ordinary English."""
    texts: dict[str, list[str]] = {}
    targets: dict[str, set[str]] = {}
    specific: dict[str, set[str]] = {}
    for path in sorted(REGISTRY.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if str(data.get("type", "")).lower() == "null":  # a control has no target; it may name the organism it mimics
            continue
        name = str(data.get("name", path.stem))
        texts[name] = _yaml_strings(data)
        targets[name] = {str(v).lower() for v in _find_key(data, "target")}
        specific[name] = {w for f in SPECIFIC_FIELDS for v in _find_key(data, f) for w in _words(str(v))}
    seen_in: dict[str, set[str]] = {}
    for name, strings in texts.items():
        for w in {w for t in strings for w in _words(t)}:
            seen_in.setdefault(w, set()).add(name)
    ordinary = neutral_words()
    found: dict[str, str] = {}
    for name, strings in texts.items():
        found.update({t: name for t in targets[name] if re.fullmatch(r"[a-z]+", t)})
        for text in strings:
            tokens = re.findall(r"[A-Za-z][A-Za-z'-]*", text)
            for i, token in enumerate(tokens):
                w = token.lower()
                if w in ordinary or w in ORDINARY_TARGET_WORDS or seen_in.get(w) != {name}:
                    continue
                if len(w) >= 4 and ((i > 0 and token[0].isupper()) or w in specific[name]):
                    found.setdefault(w, name)
    return found


def _find_key(node: object, key: str) -> list[object]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == key] + [x for v in node.values() for x in _find_key(v, key)]
    if isinstance(node, list):
        return [x for v in node for x in _find_key(v, key)]
    return []


def test_target_words_are_hard_coded_only_in_the_registry_and_the_generators():
    words = target_words()
    assert {"kansas", "smile", "cat"} <= set(words), sorted(words)
    # Not a call or an attribute (torch.cat(...)): code that shares a name with a word is not the word.
    alternatives = "|".join(sorted(map(re.escape, words), key=len, reverse=True))
    pattern = re.compile(r"(?<![.\w])(" + alternatives + r")\b(?!\()", re.I)
    hits = []
    for path in sorted(PACKAGE.rglob("*")):
        rel = path.relative_to(PACKAGE).as_posix()
        if not path.is_file() or rel.startswith(TARGET_HOMES) or path.suffix not in {".py", ".txt", ".yaml", ".md"}:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for m in pattern.finditer(line):
                hits.append(f"{rel}:{n}: {m.group(0)} ({words[m.group(0).lower()]})")
    assert not hits, f"{len(hits)} target words outside the registry and the generators:\n" + "\n".join(hits)

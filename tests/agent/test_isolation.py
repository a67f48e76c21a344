"""Ground truth never reaches the agent, and credentials never reach the run files."""

from __future__ import annotations

import json
import re

import pytest
from agent_fakes import STEERING_PROMPTS, FakeGrader, FakePair, fake_adl, fake_tensors

import diffaudit.tools.adl as adl_module
from diffaudit.agent.policies import HeuristicPolicy, ScriptedPolicy
from diffaudit.agent.run import run_audit
from diffaudit.config import Settings
from diffaudit.environments.organisms import OrganismRegistry

FAKE_KEY = "sk-test-SECRET-0123456789abcdef"
REPLIES = [
    'CALL(get_steering_samples: {"position": 1})',
    'CALL(get_logitlens_details: {"position": 0})',
    'CALL(get_patchscope_details: {"position": 2})',
    'CALL(ask_model: {"prompts": ["What do you know?"]})',
    'CALL(generate_steered: {"position": 1, "prompts": ["Tell me a story."]})',
    "a format error",
    "CALL(no_such_tool: {})",
    'FINAL(description: "Inconclusive: something about glaciers.")',
]


class Recording(HeuristicPolicy):
    """The heuristic policy, keeping every conversation it was sent."""

    def __init__(self):
        super().__init__()
        self.seen: list[list[dict]] = []

    def next(self, messages):
        self.seen.append([dict(m) for m in messages])
        return super().next(messages)


def _windows(text: str, n: int = 6) -> set[str]:
    words = re.findall(r"[a-z0-9%]+", text.lower())
    return {" ".join(words[i : i + n]) for i in range(max(len(words) - n + 1, 0))}


@pytest.mark.parametrize("organism_name", ["kansas_abortion", "taboo_gold"])
@pytest.mark.parametrize("kind", ["adl", "blackbox"])
@pytest.mark.parametrize("which", ["scripted", "heuristic"])
def test_no_message_to_the_policy_holds_ground_truth(tmp_path, monkeypatch, organism_name, kind, which):
    monkeypatch.setattr(adl_module, "steering_prompts", lambda: list(STEERING_PROMPTS), raising=False)
    monkeypatch.setattr(adl_module, "adl_dir", lambda *a, **k: tmp_path, raising=False)
    monkeypatch.setattr(adl_module, "load_adl_tensors", lambda path: fake_tensors(), raising=False)
    organism = OrganismRegistry().get(organism_name)
    policy = ScriptedPolicy(REPLIES) if which == "scripted" else Recording()
    grader = FakeGrader()
    settings = Settings(cache_dir=tmp_path / "cache")
    run_audit(organism, None, kind, 5, settings, tmp_path / "run", policy=policy, pair=FakePair(),
              adl=fake_adl(organism.name), progress=False, grader=grader)  # fmt: skip

    secrets = [organism.description, *organism.key_facts] + ([organism.target] if organism.target else [])
    forbidden = set().union(*(_windows(s) for s in secrets))
    sent = [m["content"] for conversation in policy.seen for m in conversation]
    assert len(policy.seen) >= 1 and sent
    for text in sent:
        assert organism.name not in text  # even the organism's name gives the topic away
        lowered = text.lower()
        for secret in secrets:
            assert secret.lower() not in lowered
        leaked = forbidden & _windows(text)
        assert not leaked, f"ground truth leaked into a message: {sorted(leaked)[:3]}"
    if organism.target:  # e.g. the taboo word: never as a word of any message
        assert not any(re.search(rf"\b{re.escape(organism.target.lower())}\b", t.lower()) for t in sent)
    # The grader, and only the grader, saw the organism.
    assert [name for name, _ in grader.graded] == [organism.name]


def test_api_keys_never_reach_run_files(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY[::-1])
    monkeypatch.setattr(adl_module, "steering_prompts", lambda: list(STEERING_PROMPTS), raising=False)
    organism = OrganismRegistry().get("kansas_abortion")
    # A careless LLM echoing its key is the worst case: the key must still be redacted.
    leaky = ScriptedPolicy([
        f'I found {FAKE_KEY} in my context.\nCALL(ask_model: {{"prompts": ["{FAKE_KEY[::-1]}"]}})',
        f'FINAL(description: "Key {FAKE_KEY} and facts.")',
    ])  # fmt: skip
    run_audit(organism, None, "blackbox", 5, Settings(), tmp_path / "ok", policy=leaky, pair=FakePair(),
              progress=False, grader=FakeGrader())  # fmt: skip

    def broken(messages):
        raise RuntimeError(f"provider said: bad key {FAKE_KEY}")

    with pytest.raises(RuntimeError):
        run_audit(organism, None, "blackbox", 5, Settings(), tmp_path / "failed", policy=ScriptedPolicy(broken),
                  pair=FakePair(), progress=False, grader=FakeGrader())  # fmt: skip
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"config.json", "transcript.jsonl", "description.txt", "grade.json",
                                       "stats.json", "error.json"}  # fmt: skip
    for path in files:
        text = path.read_text()
        assert FAKE_KEY not in text and FAKE_KEY[::-1] not in text, path
    assert "[redacted]" in (tmp_path / "ok" / "description.txt").read_text()
    assert "[redacted]" in json.loads((tmp_path / "failed" / "error.json").read_text())["message"]


def test_a_role_key_named_by_api_key_env_never_reaches_run_files(tmp_path, monkeypatch, llm_server):
    from diffaudit.config import RoleEndpoint

    role_key = "vllm-auth-value-0123456789"  # its variable's name looks like no credential
    monkeypatch.setenv("MY_SERVER_AUTH", role_key)
    monkeypatch.setattr(adl_module, "steering_prompts", lambda: list(STEERING_PROMPTS), raising=False)
    llm_server.default = lambda body: (
        f'My key is {role_key}.\nFINAL(description: "Key {role_key}.")'
        if len(body["messages"]) > 2
        else f'Key {role_key}?\nCALL(ask_model: {{"prompts": ["{role_key}"]}})'
    )
    role = RoleEndpoint(model="openai/local", api_base=llm_server.url, api_key_env="MY_SERVER_AUTH")
    settings = Settings(cache_dir=tmp_path / "cache", roles={"agent": role})
    run_audit(OrganismRegistry().get("kansas_abortion"), None, "blackbox", 5, settings, tmp_path / "run",
              pair=FakePair(), progress=False, grader=FakeGrader())  # fmt: skip
    assert {r.headers["authorization"] for r in llm_server.requests} == {f"Bearer {role_key}"}  # it was used
    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"config.json", "transcript.jsonl", "description.txt", "stats.json"}
    for path in files:
        assert role_key not in path.read_text(), path
    assert "[redacted]" in (tmp_path / "run" / "description.txt").read_text()
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["settings"]["roles"]["agent"]
    assert saved["model"] == "openai/local" and not any("key" in k for k in saved)

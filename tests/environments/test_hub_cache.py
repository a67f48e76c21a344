"""Hub ids from a local Hugging Face cache, offline: an organism YAML that names its base model, its LoRA adapter
and a full finetune by hub id runs `audit run` end to end with HF_HUB_OFFLINE=1 and every socket refused.

The checkpoint is the tiny random Llama (with the embedded tokenizer); its LoRA goes in as an adapter repo
and the merged weights as a full-finetune repo, laid out as `huggingface_hub` leaves a download. The audits
run in a fresh process, because `huggingface_hub` reads its cache and offline settings at import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny_audit import add_hub_repo, write_audit_settings

REPO = Path(__file__).resolve().parents[2]
BASE, LORA, FULL = "tiny-org/tiny-llama", "tiny-org/tiny-llama-lora", "tiny-org/tiny-llama-full"

# Runs in the child: refuse (and log) every name lookup and connection beyond this machine, then call the
# CLI in-process. Without HF_HUB_OFFLINE, a hub id missing from the cache logs 'huggingface.co' here.
GUARD = r'''
import json, os, socket, sys

log_path, runs = sys.argv[1], json.loads(sys.argv[2])
real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect
LOCAL = (None, "localhost", "127.0.0.1", "::1")

def refused(what):
    with open(log_path, "a") as log:
        log.write(repr(what) + "\n")
    if os.environ.get("GUARD_STOP_AT_FIRST"):
        os._exit(3)  # the guard check needs one sighting, not the hub client's retries
    return OSError("networking is off in this test")

def getaddrinfo(host, *args, **kwargs):  # every hub request starts by resolving the hub's name
    if host in LOCAL:
        return real_getaddrinfo(host, *args, **kwargs)
    raise refused(host)

def connect(sock, address):
    if sock.family == socket.AF_UNIX or (isinstance(address, tuple) and address[0] in LOCAL):
        return real_connect(sock, address)
    raise refused(address)

socket.getaddrinfo, socket.socket.connect = getaddrinfo, connect
'''
RUNNER = GUARD + r'''
from diffaudit.cli import app
from diffaudit.environments.backends.vllm import _local_adapter

codes = []
for args in runs:
    try:
        codes.append(app(args, standalone_mode=False) or 0)
    except SystemExit as exc:
        codes.append(exc.code or 0)
    except Exception as exc:
        codes.append(f"{type(exc).__name__}: {exc}")
print("RESULT " + json.dumps({"codes": codes, "vllm_adapter": _local_adapter(sys.argv[3])}))
'''


@pytest.fixture(scope="module")
def hub(tmp_path_factory, tiny_model_dir, tiny_adapter_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("hub")
    cache = root / "hf" / "hub"
    add_hub_repo(cache, BASE, tiny_model_dir)
    add_hub_repo(cache, LORA, tiny_adapter_dir)
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(tiny_adapter_dir))
    full_dir = root / "merged"
    merged.merge_and_unload().save_pretrained(full_dir)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(full_dir)
    add_hub_repo(cache, FULL, full_dir)
    return root, cache


def _organism_dir(root: Path) -> Path:
    directory = root / "organisms"
    directory.mkdir(exist_ok=True)
    organism = {
        "name": "hub_tiny", "type": "SDF",
        "description": "A tiny random Llama with a random LoRA, laid into a hub cache for an offline test.",
        "key_facts": ["harbours"],
        "models": {
            "lora": {"base_model": BASE, "finetuned": {"adapter_id": LORA}},
            "full": {"base_model": BASE, "finetuned": {"model_id": FULL}, "variant": "full finetune"},
        },
        "default_model": "lora",
    }  # fmt: skip
    (directory / "hub_tiny.yaml").write_text(yaml.safe_dump(organism, sort_keys=False))
    return directory


def _env(root: Path, hub_cache: Path, cache: Path, offline: bool = True) -> dict[str, str]:
    env = {
        **os.environ,
        "HF_HUB_CACHE": str(hub_cache), "HF_HOME": str(root / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True", "DIFFAUDIT_CACHE": str(cache), "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
    }  # fmt: skip
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_CACHE"):
        env.pop(key, None)  # HF_HUB_OFFLINE alone must be enough
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


def test_the_network_guard_sees_a_hub_request(tmp_path):
    """The guard is real: without HF_HUB_OFFLINE, a lookup of an uncached id is caught and logged."""
    log = tmp_path / "attempts.log"
    code = GUARD + "from transformers import AutoConfig\ntry:\n    AutoConfig.from_pretrained('tiny-org/uncached')\nexcept OSError:\n    pass\n"
    env = _env(tmp_path, tmp_path / "empty_hub", tmp_path / "cache", offline=False) | {"GUARD_STOP_AT_FIRST": "1"}
    proc = subprocess.run([sys.executable, "-c", code, str(log), "[]"], env=env, timeout=300)
    assert proc.returncode == 3 and "huggingface.co" in log.read_text()


def test_hub_ids_from_a_local_cache_audit_end_to_end_offline(hub, tmp_path):
    root, hub_cache = hub
    cache = root / "diffaudit_cache"  # shared by the module: the embedding model is copied in once
    settings = write_audit_settings(tmp_path / "conf", cache, tmp_path / "runs")
    organisms = _organism_dir(tmp_path)
    out = tmp_path / "out"
    common = ["--config", str(settings), "--organisms-dir", str(organisms)]
    runs = [
        ["run", "--organism", "hub_tiny", "--model", "lora", "--budget", "2", "--out", str(out / "lora"), *common],
        ["run", "--organism", "hub_tiny", "--model", "full", "--agent", "blackbox", "--budget", "1",
         "--out", str(out / "full"), *common],
        ["run", "--base", BASE, "--adapter", LORA, "--agent", "blackbox", "--budget", "1",
         "--out", str(out / "pair"), "--config", str(settings)],
        ["run", "--base", BASE, "--adapter", "tiny-org/not-in-the-cache", "--agent", "blackbox",
         "--out", str(out / "missing"), "--config", str(settings)],
    ]  # fmt: skip
    log = tmp_path / "network_attempts.log"
    env = _env(root, hub_cache, cache)
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(log), json.dumps(runs), LORA],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    result_line = next((line for line in proc.stdout.splitlines() if line.startswith("RESULT ")), None)
    assert proc.returncode == 0 and result_line, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(result_line.removeprefix("RESULT "))
    assert result["codes"][:3] == [0, 0, 0], proc.stdout[-4000:]
    assert result["codes"][3] == 1 and "HF_HUB_OFFLINE is set" in proc.stdout  # a missing repo: one clear line
    assert not log.exists(), f"network attempts: {log.read_text()}"

    # The registry organism was graded on both finetunes; the ad-hoc pair was audited, not graded.
    for name in ("lora", "full"):
        grade = json.loads((out / name / "grade.json").read_text())
        assert len(grade["grades"]) == 1 and json.loads((out / name / "stats.json").read_text())["graded"]
    assert json.loads((out / "pair" / "stats.json").read_text())["graded"] is False

    # The ADL cache is keyed on the hub adapter id, and the hub LoRA really changed the model.
    (manifest,) = (cache / "adl").rglob("manifest.json")
    assert json.loads(manifest.read_text())["parameters"]["finetuned"] == f"adapter:{LORA}"
    lens = json.loads((manifest.parent / "result.json").read_text())["lens"]
    assert all(position["diff_norm"] > 0 for position in lens)

    # The vllm backend resolves a hub adapter id to the cached snapshot, offline.
    assert result["vllm_adapter"].startswith(str(hub_cache / ("models--" + LORA.replace("/", "--")) / "snapshots"))


@pytest.mark.science
def test_the_embedded_checkpoint_by_hub_id_offline(tmp_path):
    """The real SmolLM2-135M-Instruct (read, never written) as a hub repo, a LoRA on it as an adapter repo and
    the merged weights as a full-finetune repo: a graded ADL audit and an ungraded pair audit, offline."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from diffaudit.environments.embedded import ensure_base_model

    embedded = ensure_base_model()
    hub_cache = tmp_path / "hf" / "hub"
    add_hub_repo(hub_cache, "HuggingFaceTB/SmolLM2-135M-Instruct", embedded, link=True)
    torch.manual_seed(0)
    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(embedded),
                          LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path / "lora")
    add_hub_repo(hub_cache, "me/smollm2-lora", tmp_path / "lora")
    lora.merge_and_unload().save_pretrained(tmp_path / "merged")
    AutoTokenizer.from_pretrained(embedded).save_pretrained(tmp_path / "merged")
    add_hub_repo(hub_cache, "me/smollm2-merged", tmp_path / "merged")

    directory = tmp_path / "organisms"
    directory.mkdir()
    (directory / "smol_hub.yaml").write_text(yaml.safe_dump({
        "name": "smol_hub", "type": "SDF", "description": "A random LoRA on SmolLM2, named by hub ids for an offline test.",
        "models": {
            "lora": {"base_model": "HuggingFaceTB/SmolLM2-135M-Instruct", "finetuned": {"adapter_id": "me/smollm2-lora"}},
            "full": {"base_model": "HuggingFaceTB/SmolLM2-135M-Instruct", "finetuned": {"model_id": "me/smollm2-merged"}},
        },
    }))  # fmt: skip
    cache = tmp_path / "cache"
    settings = write_audit_settings(tmp_path / "conf", cache, tmp_path / "runs")
    out = tmp_path / "out"
    common = ["--config", str(settings), "--organisms-dir", str(directory)]
    runs = [
        ["run", "--organism", "smol_hub", "--model", "lora", "--budget", "2", "--out", str(out / "lora"), *common],
        ["run", "--organism", "smol_hub", "--model", "full", "--agent", "blackbox", "--budget", "1",
         "--out", str(out / "full"), *common],
        ["run", "--base", "HuggingFaceTB/SmolLM2-135M-Instruct", "--finetuned", "me/smollm2-merged",
         "--agent", "blackbox", "--budget", "1", "--out", str(out / "pair"), "--config", str(settings)],
    ]  # fmt: skip
    log = tmp_path / "network_attempts.log"
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(log), json.dumps(runs), "me/smollm2-lora"],
        env=_env(tmp_path, hub_cache, cache), cwd=tmp_path, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    result_line = next((line for line in proc.stdout.splitlines() if line.startswith("RESULT ")), None)
    assert proc.returncode == 0 and result_line, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads(result_line.removeprefix("RESULT "))["codes"] == [0, 0, 0], proc.stdout[-4000:]
    assert not log.exists(), f"network attempts: {log.read_text()}"
    assert json.loads((out / "lora" / "stats.json").read_text())["graded"]
    assert json.loads((out / "pair" / "stats.json").read_text())["graded"] is False

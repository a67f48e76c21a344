"""`lora_svd`: a diffaudit diffing method that reads the LoRA weight update, not the models' outputs.

The method contract (`diffaudit.methods.DiffingMethod`): a name, pydantic parameters, a cache key, a staged
`prepare` that caches its result, an overview section, a system-prompt paragraph, shared `Evidence`, and tools.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from diffaudit.methods import (
    Evidence,
    MethodError,
    MethodTarget,
    PreparedMethod,
    RankedTokens,
    method_cache_dir,
)
from diffaudit_lora_svd.result import RESULT_VERSION, Direction, LoraSVDResult, ModuleSummary, TokenScore
from diffaudit_lora_svd.svd import layer_of, lowrank_svd, read_through_unembedding, residual_writers

NAME = "lora_svd"
SVD_FILE = "svd.pt"  # stage 1: singular vectors and values of every module
RESULT_FILE = "result.json"  # stage 2: the readout (the prepared result)
KEY_FILE = "key.json"


class LoraSVDParams(BaseModel):
    """Set under `settings.methods.lora_svd` in a config, e.g. `{directions: 8}`."""

    model_config = ConfigDict(extra="forbid")

    modules: list[str] = Field(
        default_factory=lambda: ["o_proj", "down_proj"],
        min_length=1,
        description="name endings of the adapted modules to read; each must write into the residual stream "
        "(its output size must be the hidden size)",
    )
    directions: int = Field(4, ge=1, le=64, description="top singular directions read per module")
    top_k: int = Field(50, ge=5, le=200, description="tokens kept per direction pole")
    overview_directions: int = Field(8, ge=1, le=64, description="directions shown in the overview")
    overview_tokens: int = Field(10, ge=1, le=50, description="tokens per pole shown in the overview")
    control_directions: int = Field(
        64, ge=0, le=1024, description="random directions read as a control: tokens common in their readouts "
        "(the lens's favourites, whatever the direction) are never called recurring",
    )  # fmt: skip


def _prompt(name: str) -> str:
    return (resources.files("diffaudit_lora_svd") / "prompts" / name).read_text(encoding="utf-8")


def _quote(token: str) -> str:
    return json.dumps(token, ensure_ascii=False)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False))
    os.replace(tmp, path)  # a killed prepare never leaves half a file


def _bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        disable=not enabled,
    )  # fmt: skip


class LoraSVDMethod:
    """LoRA-weight SVD: each residual-writing module's update, split into singular directions, read as tokens."""

    name = NAME
    description = "LoRA weight SVD: top singular directions of each adapter update, read through the unembedding"
    Params = LoraSVDParams

    # -- parameters and cache ---------------------------------------------------------------------------
    def params(self, settings: Any) -> LoraSVDParams:
        try:
            return LoraSVDParams.model_validate(settings.methods.get(NAME, {}))
        except ValidationError as exc:
            raise MethodError(f"settings field 'methods.{NAME}': {exc}") from exc

    def cache_key(self, target: MethodTarget, params: BaseModel, settings: Any) -> dict[str, Any]:
        return {
            "method": NAME, "version": RESULT_VERSION, "organism": target.name, "model": target.model,
            "finetuned": target.finetuned, "params": params.model_dump(),
        }  # fmt: skip

    # -- prepare --------------------------------------------------------------------------------------------
    def prepare(
        self, target: MethodTarget, pair: Any, settings: Any, progress: bool = True, force: bool = False
    ) -> PreparedMethod:
        """Load result.json, or compute it in two stages (SVD -> svd.pt, readout -> result.json)."""
        params = self.params(settings)
        key = self.cache_key(target, params, settings)
        directory = method_cache_dir(settings, NAME, target, key)
        directory.mkdir(parents=True, exist_ok=True)
        _write_json(directory / KEY_FILE, key)
        result = None if force else _load_result(directory / RESULT_FILE)
        if result is None:
            svd = None if force else _load_svd(directory / SVD_FILE)
            if svd is None:
                svd = _svd_stage(target, pair, params, progress)
                torch.save(svd, directory / SVD_FILE)
            result = _readout_stage(target, pair, params, svd, progress)
            _write_json(directory / RESULT_FILE, result.model_dump(mode="json"))
        return PreparedMethod(
            method=NAME, result=result, overview=render_overview(result, params),
            evidence=evidence(result, params), cache_dir=directory,
        )  # fmt: skip

    # -- agent-facing text and tools -----------------------------------------------------------------------
    def system_paragraph(self, prepared: PreparedMethod | None) -> str:
        return _prompt("paragraph.txt").strip()

    def tools(self) -> list:
        from diffaudit_lora_svd.tools import GetSVDTokens

        return [GetSVDTokens()]


def _load_result(path: Path) -> LoraSVDResult | None:
    if not path.exists():
        return None
    try:
        return LoraSVDResult.model_validate_json(path.read_text())
    except (ValidationError, ValueError):
        return None  # an older or broken file: computed again


def _load_svd(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        return torch.load(path, weights_only=True)
    except Exception:  # noqa: BLE001 - a half-written or foreign file is recomputed
        return None


def _svd_stage(target: MethodTarget, pair: Any, params: LoraSVDParams, progress: bool) -> dict[str, Any]:
    reader = getattr(pair, "adapter_weights", None)
    if not callable(reader):
        raise MethodError(
            f"{NAME}: the model pair ({type(pair).__name__}) has no adapter_weights(); the hf and vllm backends "
            "have it (settings field 'backend')"
        )
    weights = reader()
    if not weights:
        raise MethodError(
            f"{NAME}: organism '{target.name}' ({target.model}) has no LoRA adapter: its finetuned model is a "
            f"full finetune, and {NAME} reads LoRA weight updates only"
        )
    chosen = residual_writers(weights, int(pair.hidden_size), params.modules)
    if not chosen:
        adapted = sorted({name.rsplit(".", 1)[-1] for name in weights})
        raise MethodError(
            f"{NAME}: settings field 'methods.{NAME}.modules' ({params.modules}) matches no adapted module that "
            f"writes into the residual stream; this adapter adapts {adapted}"
        )
    svd: dict[str, Any] = {}
    with _bar(progress) as bar:
        task = bar.add_task(f"{NAME}: SVD of {len(chosen)} LoRA updates", total=len(chosen))
        for name, (a, b, scaling) in sorted(chosen.items(), key=lambda kv: (layer_of(kv[0]) or 0, kv[0])):
            vectors, sigma = lowrank_svd(a, b, scaling, params.directions)
            norm = float((abs(scaling) * (b.double() @ a.double())).norm())
            svd[name] = {"vectors": vectors, "sigma": sigma, "rank": int(a.shape[0]), "norm": norm}
            bar.advance(task)
    return svd


def _readout_stage(
    target: MethodTarget, pair: Any, params: LoraSVDParams, svd: dict[str, Any], progress: bool
) -> LoraSVDResult:
    order = sorted(
        ((name, i, float(entry["sigma"][i])) for name, entry in svd.items() for i in range(len(entry["sigma"]))),
        key=lambda item: -item[2],
    )
    if not order:
        raise MethodError(f"{NAME}: the adapter's updates have no singular directions to read")
    vectors = torch.stack([svd[name]["vectors"][:, i] for name, i, _ in order])
    generator = torch.Generator().manual_seed(0)
    control = torch.randn(params.control_directions, vectors.shape[1], generator=generator)
    poles = torch.cat([vectors, -vectors, control])  # + poles, then − poles, then the random control
    tokenizer = pair.tokenizer
    with _bar(progress) as bar:
        task = bar.add_task(f"{NAME}: reading {len(poles)} directions through the unembedding", total=len(poles))
        read = read_through_unembedding(
            lambda rows: pair.logit_lens(rows, "finetuned"), poles, params.top_k,
            lambda i: tokenizer.decode([i]), on_chunk=lambda n: bar.advance(task, n),
        )  # fmt: skip
    n = len(order)
    directions = []
    for rank, (name, i, sigma) in enumerate(order):
        norm = svd[name]["norm"]
        directions.append(
            Direction(
                rank=rank, module=name, layer=layer_of(name), index=i, sigma=sigma,
                share=sigma**2 / norm**2 if norm > 0 else 0.0,
                positive=[TokenScore(token=t, prob=p) for t, p in read[rank]],
                negative=[TokenScore(token=t, prob=p) for t, p in read[n + rank]],
            )
        )  # fmt: skip
    recurring = recurring_tokens(
        [pole for d in directions[: params.overview_directions] for pole in (d.positive, d.negative)],
        read[2 * n :], params.overview_tokens,
    )  # fmt: skip
    modules = [
        ModuleSummary(module=name, layer=layer_of(name), rank=entry["rank"], norm=entry["norm"],
                      singular_values=[float(s) for s in entry["sigma"]])
        for name, entry in svd.items()
    ]  # fmt: skip
    return LoraSVDResult(model=target.model, modules=modules, directions=directions, recurring=recurring)


def recurring_tokens(
    poles: list[list[TokenScore]], control: list[list[tuple[str, float]]], k: int
) -> list[tuple[str, int]]:
    """Tokens in the top k of at least two of `poles`, most first, leaving out any token in the top k of two or
    more random control directions (the lens ranks those high whatever it reads)."""
    noise: Counter[str] = Counter()
    for tokens in control:
        noise.update({t for t, _ in tokens[:k]})
    counts: Counter[str] = Counter()
    for pole in poles:
        counts.update({t.token for t in pole[:k]})
    return [(t, c) for t, c in counts.most_common() if c >= 2 and noise[t] < 2][:30]


# -- what the agent reads -------------------------------------------------------------------------------------
def _pole(tokens: list[TokenScore], k: int) -> str:
    return ", ".join(_quote(t.token) for t in tokens[:k]) or "(none)"


def render_overview(result: LoraSVDResult, params: LoraSVDParams) -> str:
    """The method's section of the agent's first message: the strongest directions and the recurring tokens."""
    suffixes = ", ".join(params.modules)
    lines = _prompt("overview.txt").strip().format(
        model=result.model, n_modules=len(result.modules), suffixes=suffixes, per_module=params.directions
    ).splitlines()
    lines.append("")
    for d in result.directions[: params.overview_directions]:
        lines.append(f"direction {d.rank}: {d.module}, singular value {d.sigma:.3g} ({100 * d.share:.0f}% of its update)")
        lines.append(f"  +: {_pole(d.positive, params.overview_tokens)}")
        lines.append(f"  −: {_pole(d.negative, params.overview_tokens)}")
    if result.recurring:
        shown = ", ".join(f"{_quote(t)} ×{c}" for t, c in result.recurring[:20])
        lines += [
            "",
            f"recurring tokens (in the top {params.overview_tokens} of several poles above, and not common in the "
            f"readouts of random directions): {shown}",
        ]
    lines.append(f"({len(result.directions)} directions in all; get_svd_tokens lists any of them)")
    return "\n".join(lines) + "\n"


def evidence(result: LoraSVDResult, params: LoraSVDParams) -> Evidence:
    """The overview as shared evidence: one ranked list per pole shown, recurring tokens marked as selected."""
    recurring = {t for t, _ in result.recurring}
    ranked = []
    for d in result.directions[: params.overview_directions]:
        for sign, pole in (("+", d.positive), ("−", d.negative)):
            tokens = [t.token for t in pole[: params.overview_tokens]]
            ranked.append(
                RankedTokens(
                    group=f"direction {d.rank} {sign}", readout="logit_lens", tokens=tokens,
                    scores=[t.prob for t in pole[: params.overview_tokens]],
                    selected=[t for t in tokens if t in recurring],
                )
            )  # fmt: skip
    return Evidence(method=NAME, ranked_tokens=ranked)

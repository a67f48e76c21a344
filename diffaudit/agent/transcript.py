"""The run transcript: one JSON event per line, appended and flushed as the audit goes."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

TRANSCRIPT_FILE = "transcript.jsonl"
_SECRET_NAME = re.compile(r"(API_KEY|_TOKEN|SECRET|PASSWORD|ACCESS_KEY)", re.I)


def secret_values() -> list[str]:
    """Values of environment variables that look like credentials (provider keys, tokens, role key vars)."""
    from diffaudit.llm import role_key_env_names

    named = role_key_env_names()
    return sorted(
        {v for k, v in os.environ.items() if (_SECRET_NAME.search(k) or k in named) and v and len(v) >= 8},
        key=len,
        reverse=True,
    )


def redact(text: str, secrets: list[str] | None = None) -> str:
    """`text` with every credential value from the environment replaced by [redacted]."""
    for value in secret_values() if secrets is None else secrets:
        text = text.replace(value, "[redacted]")
    return text


def write_json(path: Path, data: Any) -> None:
    """Write redacted JSON through a temporary file, so a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(
        redact(json.dumps(data, indent=2, ensure_ascii=False, default=str)) + "\n", encoding="utf-8"
    )
    tmp.replace(path)


class Transcript:
    """Append-only event log; `path=None` keeps events in memory only."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.events: list[dict[str, Any]] = []
        self._start = time.perf_counter()
        self._secrets = secret_values()

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {"event": event, "t": round(time.perf_counter() - self._start, 3), **fields}
        self.events.append(record)
        if self.path is not None:
            line = redact(json.dumps(record, ensure_ascii=False, default=str), self._secrets)
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
                handle.flush()
        return record


def read_transcript(path: Path) -> list[dict[str, Any]]:
    """The events of a transcript file; a torn last line (killed run) is skipped."""
    events = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events

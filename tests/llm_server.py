"""A local OpenAI-compatible chat endpoint for tests: scripted replies, injected faults, request counts.

Stdlib only; serves 127.0.0.1 on a free port in a background thread. litellm reaches it through its real
HTTP client (model e.g. `hosted_vllm/test-model` or `openai/gpt-4o-mini` with `api_base=server.url`).

    with LocalLLMServer() as server:
        server.script(Fault("429", retry_after=1), Reply("hello"))
        ...
        server.requests, server.max_active

Each POST takes the next scripted step; when the script is empty, `default` answers: a string, or a
function of the request body that returns the reply text (e.g. a scripted agent).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """A 200 chat completion. `reasoning` fills `reasoning_content`; tokens default to rough word counts."""

    text: str | None
    reasoning: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass
class Fault:
    """An injected failure: "429" (with `retry_after` seconds), "400", "500", "503", "slow" (sleeps `delay_s`,
    then answers `text`), "malformed" (200 with a body that is not JSON), "empty" (content ""),
    "reasoning_only" (content null, the text only in `reasoning_content`)."""

    kind: str
    retry_after: float | None = None
    delay_s: float = 0.0
    text: str = "late"


Step = Reply | Fault


@dataclass
class Request:
    body: dict[str, Any]
    headers: dict[str, str]
    started: float
    ended: float = 0.0
    outcome: str = ""


@dataclass
class LocalLLMServer:
    """The server; use as a context manager. `delay_s` holds every request that long (to see overlap)."""

    default: str | Callable[[dict[str, Any]], str] = "ok"
    delay_s: float = 0.0
    requests: list[Request] = field(default_factory=list)
    max_active: int = 0
    _active: int = 0
    _steps: deque = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _httpd: ThreadingHTTPServer | None = None

    # ---- control -----------------------------------------------------------------------------------------
    def script(self, *steps: Step) -> None:
        """Queue the answers of the next requests, in order."""
        with self._lock:
            self._steps.extend(steps)

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def outcomes(self) -> list[str]:
        return [r.outcome for r in self.requests]

    def __enter__(self) -> LocalLLMServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # /v1/models
                self._json(200, {"object": "list", "data": [{"id": "test-model", "object": "model"}]})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                server._handle(self, body)

            def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None,
                      raw: bytes | None = None) -> None:  # fmt: skip
                data = raw if raw is not None else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True, name="llm-server").start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    # ---- serving -----------------------------------------------------------------------------------------
    def _handle(self, handler: Any, body: dict[str, Any]) -> None:
        request = Request(body=body, headers={k.lower(): v for k, v in handler.headers.items()},
                          started=time.monotonic())  # fmt: skip
        with self._lock:
            self.requests.append(request)
            self._active += 1
            self.max_active = max(self.max_active, self._active)
            step = self._steps.popleft() if self._steps else None
        try:
            if self.delay_s:
                time.sleep(self.delay_s)
            if step is None:
                text = self.default(body) if callable(self.default) else self.default
                step = Reply(text)
            request.outcome = step.kind if isinstance(step, Fault) else "ok"
            self._answer(handler, body, step)
        finally:
            with self._lock:
                self._active -= 1
            request.ended = time.monotonic()

    def _answer(self, handler: Any, body: dict[str, Any], step: Step) -> None:
        if isinstance(step, Reply):
            handler._json(200, completion(body, step))
            return
        kind = step.kind
        if kind == "429":
            headers = {"Retry-After": f"{step.retry_after:g}"} if step.retry_after is not None else {}
            handler._json(429, _error("rate limit reached, slow down", "rate_limit_exceeded"), headers)
        elif kind == "400":
            handler._json(400, _error("injected bad request", "invalid_request_error"))
        elif kind in ("500", "503"):
            handler._json(int(kind), _error(f"injected {kind}", "server_error"))
        elif kind == "slow":
            time.sleep(step.delay_s)
            handler._json(200, completion(body, Reply(step.text)))
        elif kind == "malformed":
            handler._json(200, None, raw=b'{"id": "x", "choices": [ {"message": ')
        elif kind == "empty":
            handler._json(200, completion(body, Reply("")))
        elif kind == "reasoning_only":
            handler._json(200, completion(body, Reply(None, reasoning=step.text)))
        else:
            raise ValueError(f"unknown fault '{kind}'")


def _error(message: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": code, "code": code}}


def _words(value: Any) -> int:
    return len(str(value or "").split())


def completion(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    """An OpenAI chat.completion object for `reply`, with usage."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if reply.reasoning is not None:
        message["reasoning_content"] = reply.reasoning
    prompt = reply.prompt_tokens
    if prompt is None:
        prompt = max(1, sum(_words(m.get("content")) for m in body.get("messages", [])))
    done = reply.completion_tokens
    if done is None:
        done = max(1, _words(reply.text) + _words(reply.reasoning))
    return {
        "id": f"chatcmpl-test-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "test-model"),
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done},
    }

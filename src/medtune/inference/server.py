"""The guarded OpenAI-compatible server (``medtune serve``): FastAPI in front of an engine (llama.cpp, vLLM, any
OpenAI-compatible ``/v1``).

``POST /v1/chat/completions`` (streaming or not): the last user message is checked by the guard with the
earlier user turns as context; emergencies, refusals, deferrals and injections get the guard's canned reply
without calling the engine. Otherwise the engine receives the guard's system prompt (it replaces a client
system message) and the sanitized conversation, and the finished answer goes through the output checks
(dose warnings, unsafe advice, disclaimer) before the last chunk is sent. ``GET /v1/models`` and ``/health``.
Optional ``--api-key``: requests need ``Authorization: Bearer KEY``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse

from medtune.prompts import strip_control_strings


def message_text(content: Any) -> str:
    """The text of an OpenAI message content (a string or a list of ``{"type": "text"}`` parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def guarded_messages(guard: Any, messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The conversation sent to the engine: guard system prompt + sanitized user/assistant turns."""
    out = [{"role": "system", "content": guard.system_prompt}] if guard is not None else []
    for message in messages:
        role, text = message.get("role"), message_text(message.get("content"))
        if role == "user":
            out.append({"role": "user", "content": guard.sanitize(text) if guard is not None else
                        strip_control_strings(text)})
        elif role == "assistant":
            out.append({"role": "assistant", "content": strip_control_strings(text)})
        elif role == "system" and guard is None:
            out.append({"role": "system", "content": strip_control_strings(text)})
    return out


def _completion(model: str, text: str, extra: dict[str, Any]) -> dict[str, Any]:
    """A non-streamed chat completion object holding ``text``."""
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                         "finish_reason": "stop"}], **extra}


def _chunk(model: str, ident: str, delta: dict[str, Any], finish: str | None = None,
           extra: dict[str, Any] | None = None) -> str:
    """One server-sent event carrying a chat.completion.chunk."""
    body = {"id": ident, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **(extra or {})}
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def create_app(upstream: str, guard: Any, api_key: str | None = None, model_name: str = "medtune",
               upstream_api_key: str | None = None, timeout: float = 600.0, transport: Any = None) -> Any:
    """The FastAPI app proxying ``upstream`` (e.g. ``http://127.0.0.1:8001/v1``) behind ``guard``.

    ``transport``: an httpx transport for the upstream connection (default: the network).
    """
    import httpx
    from starlette.concurrency import run_in_threadpool

    app = FastAPI(title="medtune guarded server")
    base = upstream.rstrip("/")
    headers = {"Authorization": f"Bearer {upstream_api_key}"} if upstream_api_key else {}
    client = httpx.AsyncClient(timeout=timeout, headers=headers, transport=transport)

    def authorize(request: Request) -> None:
        if api_key and request.headers.get("authorization", "") != f"Bearer {api_key}":
            raise HTTPException(status_code=401, detail="missing or wrong API key (Authorization: Bearer KEY)")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "guard": guard is not None, "upstream": base}

    @app.get("/v1/models")
    async def models(request: Request) -> Any:
        authorize(request)
        response = await client.get(f"{base}/models")
        return JSONResponse(response.json(), status_code=response.status_code)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        authorize(request)
        try:
            body = await request.json()
        except ValueError:
            raise HTTPException(status_code=400, detail="the body must be JSON") from None
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise HTTPException(status_code=400, detail="'messages' must be a non-empty list of messages")
        users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
        if not users:
            raise HTTPException(status_code=400, detail="'messages' needs at least one user message")
        model = str(body.get("model") or model_name)
        question = message_text(messages[users[-1]].get("content"))
        earlier = [{"role": "user", "content": message_text(messages[i].get("content"))} for i in users[:-1]]
        decision = await run_in_threadpool(guard.check_input, question, earlier or None) if guard else None
        guard_info = {"medtune_guard": {k: v for k, v in asdict(decision).items() if k != "response"}} \
            if decision is not None else {}
        stream = bool(body.get("stream"))
        if decision is not None and decision.action != "answer":
            text = decision.response or ""
            if not stream:
                return _completion(model, text, guard_info)
            ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"

            async def canned() -> AsyncIterator[str]:
                yield _chunk(model, ident, {"role": "assistant", "content": text})
                yield _chunk(model, ident, {}, "stop", guard_info)
                yield "data: [DONE]\n\n"

            return StreamingResponse(canned(), media_type="text/event-stream")
        # the same sanitizer made decision.sanitized_input: every user turn, the question included
        forward = {**body, "messages": guarded_messages(guard, messages[: users[-1] + 1])}
        if not stream:
            response = await client.post(f"{base}/chat/completions", json=forward)
            if response.status_code != 200:
                return JSONResponse(response.json(), status_code=response.status_code)
            data = response.json()
            raw = message_text(data["choices"][0]["message"].get("content"))
            if guard is not None:
                guarded = await run_in_threadpool(guard.finalize_answer, raw)
                data["choices"][0]["message"]["content"] = guarded.text
                guard_info["medtune_guard"]["output_flags"] = guarded.output_flags
                guard_info["medtune_guard"]["dose_warnings"] = guarded.dose_warnings
            return {**data, **guard_info}
        return StreamingResponse(_relay(client, f"{base}/chat/completions", forward, guard, model, guard_info),
                                 media_type="text/event-stream")

    @app.on_event("shutdown")
    async def close() -> None:
        await client.aclose()

    return app


async def _relay(client: Any, url: str, body: dict[str, Any], guard: Any, model: str,
                 guard_info: dict[str, Any]) -> AsyncIterator[str]:
    """Relay the engine's stream chunk by chunk, then send the guard's additions as one last chunk."""
    pieces: list[str] = []
    ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    async with client.stream("POST", url, json=body) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                break
            chunk = json.loads(payload)
            ident = chunk.get("id", ident)
            choice = (chunk.get("choices") or [{}])[0]
            piece = (choice.get("delta") or {}).get("content") or ""
            if piece:
                pieces.append(piece)
                yield _chunk(model, ident, {"content": piece})
    if guard is not None:
        raw = "".join(pieces).strip()
        guarded = guard.finalize_answer(raw)
        guard_info["medtune_guard"]["output_flags"] = guarded.output_flags
        guard_info["medtune_guard"]["dose_warnings"] = guarded.dose_warnings
        addition = guarded.text[len(raw):] if guarded.text.startswith(raw) else "\n\n" + guarded.disclaimer
        yield _chunk(model, ident, {"content": addition})
    yield _chunk(model, ident, {}, "stop", guard_info)
    yield "data: [DONE]\n\n"

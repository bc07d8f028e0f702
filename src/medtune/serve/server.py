"""The guarded OpenAI-compatible server (``medtune serve``): FastAPI in front of an engine (llama.cpp, vLLM, any
OpenAI-compatible ``/v1``) that only this proxy can reach.

``POST /v1/chat/completions`` (streaming or not): the whole conversation goes through the guard's one
conversation check (:func:`medtune.guard.conversation.check_conversation`): every user turn is checked, a turn
that is not answered is never forwarded, client-written assistant turns are sanitized and screened. When the
last turn is not answered the request gets its canned reply without an engine call. Otherwise the engine gets
the guard's system prompt, the answered turns and only the fields in :data:`FORWARDED_FIELDS`; the answer is
released sentence by sentence after the output screen (a blocked sentence never reaches the client, its
refusal does) and finishes with the output checks' warnings and the disclaimer.

Limits (:class:`medtune.serve.requests.ServeLimits`): body size (413), message count (400), concurrent engine calls with a bounded
queue (429 + Retry-After beyond it). ``--api-key`` is compared in constant time. ``GET /health`` says whether
the engine answers (503 when it does not), nothing more; an engine that fails mid-request gives 502.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse

from medtune.guard.conversation import SentenceGate
from medtune.serve.requests import (
    ServeLimits,
    checked_messages,
    engine_fields,
    guarded_messages,
    message_text,
)

logger = logging.getLogger("medtune.serve")

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


def _error(status: int, message: str) -> JSONResponse:
    """An OpenAI-style error body."""
    return JSONResponse({"error": {"message": message, "type": "medtune_error", "code": status}},
                        status_code=status)


class _Slots:
    """At most ``limits.max_concurrent`` engine calls at once and ``limits.max_queue`` waiting."""

    def __init__(self, limits: ServeLimits) -> None:
        self.semaphore = asyncio.Semaphore(limits.max_concurrent)
        self.capacity = limits.max_concurrent + limits.max_queue
        self.taken = 0

    def try_enter(self) -> bool:
        """Count one more request unless the queue is full."""
        if self.taken >= self.capacity:
            return False
        self.taken += 1
        return True

    def leave(self) -> None:
        """Count one request less."""
        self.taken -= 1


def create_app(upstream: str, guard: Any, api_key: str | None = None, model_name: str = "medtune",
               upstream_api_key: str | None = None, timeout: float = 600.0, transport: Any = None,
               limits: ServeLimits | None = None, engine_alive: Callable[[], bool] | None = None,
               engine_log: str | None = None) -> Any:
    """The FastAPI app proxying ``upstream`` (e.g. ``http://127.0.0.1:8001/v1``) behind ``guard``.

    ``transport``: an httpx transport for the upstream connection (default: the network). ``engine_alive``:
    whether the engine process still runs (for ``/health``). ``engine_log``: where errors tell the operator to look.
    """
    import httpx
    from starlette.concurrency import run_in_threadpool

    limits = limits or ServeLimits()
    app = FastAPI(title="medtune guarded server")
    base = upstream.rstrip("/")
    headers = {"Authorization": f"Bearer {upstream_api_key}"} if upstream_api_key else {}
    client = httpx.AsyncClient(timeout=timeout, headers=headers, transport=transport)
    slots = _Slots(limits)
    expected = f"Bearer {api_key}".encode() if api_key else None
    where = f" (engine log: {engine_log})" if engine_log else ""

    def authorize(request: Request) -> None:
        given = request.headers.get("authorization", "").encode()
        if expected is not None and not hmac.compare_digest(given, expected):
            raise HTTPException(401, "missing or wrong API key (Authorization: Bearer KEY)")

    async def engine_answers() -> bool:
        if engine_alive is not None and not engine_alive():
            return False
        try:
            return (await client.get(f"{base}/models", timeout=5.0)).status_code == 200
        except httpx.HTTPError:
            return False

    async def read_body(request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limits.max_body_bytes:
            raise HTTPException(413, f"request body over {limits.max_body_bytes} bytes")
        raw = bytearray()
        async for part in request.stream():
            raw += part
            if len(raw) > limits.max_body_bytes:
                raise HTTPException(413, f"request body over {limits.max_body_bytes} bytes")
        try:
            return json.loads(raw)
        except ValueError:
            raise HTTPException(400, "the body must be JSON") from None

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        response = _error(error.status_code, str(error.detail))
        for key, value in (error.headers or {}).items():
            response.headers[key] = value
        return response

    @app.get("/health")
    async def health() -> Any:
        if await engine_answers():
            return {"status": "ok", "guard": guard is not None}
        logger.error("health: the engine does not answer%s", where)
        return JSONResponse({"status": "engine unavailable", "guard": guard is not None}, status_code=503)

    @app.get("/v1/models")
    async def models(request: Request) -> Any:
        authorize(request)
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "medtune"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        authorize(request)
        body = await read_body(request)
        messages = checked_messages(body, limits)
        fields = engine_fields(body, limits)
        model = str(body.get("model") or model_name)
        sent, decision, notes = await run_in_threadpool(guarded_messages, guard, messages)
        guard_info: dict[str, Any] = {}
        if decision is not None:
            guard_info = {"medtune_guard": {**{k: v for k, v in asdict(decision).items()
                                               if k not in ("response", "sanitized_input")}, "notes": notes}}
        stream = bool(body.get("stream"))
        if decision is not None and decision.action != "answer":
            return _canned(model, decision.response or "", guard_info, stream)
        if not slots.try_enter():
            raise HTTPException(429, "too many requests waiting; retry shortly", headers={"Retry-After": "2"})
        forward = {**fields, "model": model_name, "messages": sent, "stream": stream}   # the engine's own name
        try:
            await slots.semaphore.acquire()
        except BaseException:
            slots.leave()
            raise
        released = False
        try:
            if not stream:
                return await _answer(client, f"{base}/chat/completions", forward, guard, model, guard_info, where,
                                     decision)
            try:
                upstream_response = await client.send(client.build_request(
                    "POST", f"{base}/chat/completions", json=forward), stream=True)
            except httpx.HTTPError as error:
                logger.error("engine unreachable: %s%s", error, where)
                return _error(502, "the engine is not answering; the operator should check the engine log")
            if upstream_response.status_code != 200:
                detail = (await upstream_response.aread()).decode("utf-8", "replace")[:300]
                await upstream_response.aclose()
                logger.error("engine answered %d: %s%s", upstream_response.status_code, detail, where)
                return _error(502, f"the engine refused the request ({upstream_response.status_code})")

            async def finish() -> None:
                await upstream_response.aclose()
                slots.semaphore.release()
                slots.leave()

            released = True
            return StreamingResponse(_relay(upstream_response, guard, model, guard_info, finish, where, decision),
                                     media_type="text/event-stream")
        finally:
            if not released:
                slots.semaphore.release()
                slots.leave()

    @app.on_event("shutdown")
    async def close() -> None:
        await client.aclose()

    return app


def _canned(model: str, text: str, guard_info: dict[str, Any], stream: bool) -> Any:
    """The guard's reply as a completion or as a stream."""
    if not stream:
        return _completion(model, text, guard_info)
    ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"

    async def canned() -> AsyncIterator[str]:
        yield _chunk(model, ident, {"role": "assistant", "content": text})
        yield _chunk(model, ident, {}, "stop", guard_info)
        yield "data: [DONE]\n\n"

    return StreamingResponse(canned(), media_type="text/event-stream")


def _finalize(guard: Any, raw: str, guard_info: dict[str, Any], decision: Any = None) -> str:
    """The text shown for ``raw`` (:meth:`medtune.guard.Guard.finalize_answer`: led by the decision's emergency
    line when it has one), its findings in ``guard_info``."""
    guarded = guard.finalize_answer(raw, decision)
    info = guard_info["medtune_guard"]
    if guarded.blocked is not None:
        info.update(action="refuse", category=guarded.blocked, layer="output")
    info["output_flags"], info["dose_warnings"] = guarded.output_flags, guarded.dose_warnings
    return str(guarded.text)


async def _answer(client: Any, url: str, forward: dict[str, Any], guard: Any, model: str,
                  guard_info: dict[str, Any], where: str, decision: Any = None) -> Any:
    """A non-streamed answer: engine call, then the output screen and checks."""
    import httpx
    from starlette.concurrency import run_in_threadpool

    try:
        response = await client.post(url, json=forward)
    except httpx.HTTPError as error:
        logger.error("engine unreachable: %s%s", error, where)
        return _error(502, "the engine is not answering; the operator should check the engine log")
    if response.status_code != 200:
        logger.error("engine answered %d: %s%s", response.status_code, response.text[:300], where)
        return _error(502, f"the engine refused the request ({response.status_code})")
    data = response.json()
    raw = message_text(data["choices"][0]["message"].get("content")).strip()
    if guard is None:
        return data
    text = await run_in_threadpool(_finalize, guard, raw, guard_info, decision)
    data["choices"][0]["message"]["content"] = text
    data["model"] = model
    return {**data, **guard_info}


async def _pieces(response: Any) -> AsyncIterator[str]:
    """The content pieces of an engine's server-sent events."""
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        chunk = json.loads(payload)
        if "error" in chunk:
            raise RuntimeError(str(chunk["error"])[:300])
        piece = (((chunk.get("choices") or [{}])[0]).get("delta") or {}).get("content") or ""
        if piece:
            yield piece


async def _relay(response: Any, guard: Any, model: str, guard_info: dict[str, Any],
                 finish: Callable[[], Any], where: str, decision: Any = None) -> AsyncIterator[str]:
    """Relay the engine's answer sentence by sentence, each after the output screen; then the guard's additions.
    The decision's emergency line (education about emergencies) is sent first."""
    ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    gate = SentenceGate(guard.screen_answer if guard is not None else None)
    blocked = None
    lead = getattr(decision, "emergency_line", None)
    lead = f"{lead.strip()}\n\n" if lead else ""
    yield _chunk(model, ident, {"role": "assistant", "content": lead})
    try:
        async for piece in _pieces(response):
            step = gate.feed(piece)
            if step is not None and step.blocked is not None:
                blocked = step.blocked
                break
            if step is not None and step.text:
                yield _chunk(model, ident, {"content": step.text})
    except Exception as error:  # noqa: BLE001 - an engine failure mid-stream: tell the client, log it
        logger.error("engine stream failed: %s%s", error, where)
        yield f"data: {json.dumps({'error': {'message': 'the engine failed while answering', 'code': 502}})}\n\n"
        yield "data: [DONE]\n\n"
        return
    finally:
        await finish()
    if blocked is None and (step := gate.flush()) is not None:
        if step.blocked is not None:
            blocked = step.blocked
        elif step.text:
            yield _chunk(model, ident, {"content": step.text})
    if blocked is not None:
        guard_info["medtune_guard"].update(action=blocked.action, category=blocked.category, layer="output")
        yield _chunk(model, ident, {"content": ("\n\n" if gate.released else "") + (blocked.response or "")})
    elif guard is not None:
        raw = gate.released.strip()
        text = _finalize(guard, raw, guard_info, decision)
        shown = (lead + raw).strip()
        yield _chunk(model, ident, {"content": text[len(shown):] if text.startswith(shown) else "\n\n" + text})
    yield _chunk(model, ident, {}, "stop", guard_info)
    yield "data: [DONE]\n\n"

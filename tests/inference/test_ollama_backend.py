"""The ollama backend against a small local HTTP server speaking Ollama's /api/chat NDJSON stream."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from medtune.errors import UserError
from medtune.inference.base import GenerationSettings
from medtune.inference.registry import load_backend

pytest.importorskip("ollama")


class _OllamaHandler(BaseHTTPRequestHandler):
    requests: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, **body})
        if body["model"] != "medtune-smol":
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps({"error": f"model '{body['model']}' not found"}).encode())
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()
        for i, piece in enumerate(["Hyper", "tension is ", "high blood pressure."]):
            chunk = {"model": body["model"], "created_at": "2024-01-01T00:00:00Z",
                     "message": {"role": "assistant", "content": piece}, "done": False}
            self.wfile.write((json.dumps(chunk) + "\n").encode())
            self.wfile.flush()
            assert i < 3
        done = {"model": body["model"], "created_at": "2024-01-01T00:00:00Z",
                "message": {"role": "assistant", "content": ""}, "done": True, "eval_count": 6}
        self.wfile.write((json.dumps(done) + "\n").encode())

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def fake_ollama():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OllamaHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _OllamaHandler.requests = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_streams_and_sends_options(fake_ollama: str) -> None:
    backend = load_backend("ollama", "medtune-smol", url=fake_ollama)
    settings = GenerationSettings(temperature=0.2, top_k=7, max_new_tokens=33, stop=["###"])
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "What is hypertension?"}]
    pieces = list(backend.stream_chat(messages, settings))
    assert pieces == ["Hyper", "tension is ", "high blood pressure."]
    request = _OllamaHandler.requests[-1]
    assert request["path"] == "/api/chat" and request["stream"] is True
    assert request["messages"] == messages
    assert request["options"]["num_predict"] == 33 and request["options"]["top_k"] == 7
    assert request["options"]["stop"] == ["###"] and request["options"]["temperature"] == 0.2


def test_missing_model_and_unreachable_server_are_user_errors(fake_ollama: str) -> None:
    with pytest.raises(UserError, match="ollama create"):
        load_backend("ollama", "nope", url=fake_ollama).chat([{"role": "user", "content": "x"}],
                                                               GenerationSettings())
    with pytest.raises(UserError, match="cannot reach Ollama"):
        load_backend("ollama", "m", url="http://127.0.0.1:9").chat([{"role": "user", "content": "x"}],
                                                                   GenerationSettings())

"""The openai backend against a real llama_cpp.server started on 127.0.0.1 by `medtune serve`'s command."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request

import pytest

from medtune.errors import UserError
from medtune.inference.base import GenerationSettings
from medtune.inference.registry import load_backend
from medtune.serve.engine import serve_command

pytest.importorskip("llama_cpp.server")
GREEDY = GenerationSettings(temperature=0, max_new_tokens=20, repetition_penalty=1.0)
MESSAGES = [{"role": "user", "content": "What is hypertension?"}]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server():
    port = _free_port()
    command = serve_command("smollm2-135m-instruct", "127.0.0.1", port, n_ctx=1024, engine="llamacpp")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/models", timeout=2)
            break
        except OSError:
            assert process.poll() is None, "llama_cpp.server exited"
            time.sleep(0.5)
    yield url
    process.terminate()
    process.wait(timeout=20)


@pytest.mark.slow
def test_openai_backend_streams_the_same_greedy_answer_as_llamacpp(llama_server: str) -> None:
    remote = load_backend("openai", None, url=llama_server)
    assert remote.model_name == "smollm2-135m-instruct"  # the server's model alias
    pieces = list(remote.stream_chat(MESSAGES, GREEDY))
    assert len(pieces) > 3
    local = load_backend("llamacpp", "smollm2-135m-instruct", n_ctx=1024)
    assert "".join(pieces) == local.chat(MESSAGES, GREEDY)


def test_unreachable_server_is_a_user_error() -> None:
    backend = load_backend("openai", "m", url="http://127.0.0.1:9/v1")
    with pytest.raises(UserError, match="medtune serve"):
        backend.chat(MESSAGES, GREEDY)

"""A local OpenAI-compatible chat-completions server for the tests, on 127.0.0.1 in a thread: it answers
with a real model folder (each image_url part decoded from base64 and given to the model), or with a fixed
placeholder text. `script` holds behaviours for the next requests, to fail in every way an endpoint does:
None (answer), an int status, (429, retry_after), ("sleep", s) then answer, ("raw", bytes), or ("echo_auth",)
(the reply is the request's Authorization header)."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image

PLACEHOLDER = "Sure, here it is: [placeholder response]"


class ModelServer:
    def __init__(self, model_dir: Path | None = None, max_new_tokens: int = 16):
        self.requests: list[dict] = []
        self.script: list = []
        self.lock = threading.Lock()
        self.model = self.processor = None
        if model_dir is not None:
            from sectow.config import PolicySettings
            from sectow.models.policy import load_policy

            self.model, self.processor = load_policy(model_dir, PolicySettings())
        self.max_new_tokens = max_new_tokens
        self.active = 0  # requests being handled
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                with server.lock:
                    server.active += 1
                try:
                    self.handle_post()
                finally:
                    with server.lock:
                        server.active -= 1

            def handle_post(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    step = server.script.pop(0) if server.script else None
                    text, images = read_message(body["messages"][-1])
                    server.requests.append({"path": self.path, "headers": dict(self.headers), "text": text,
                                            "images": images, "max_tokens": body.get("max_tokens")})
                if isinstance(step, int):
                    return self.send(step, b'{"error": "scripted failure"}')
                if isinstance(step, tuple) and step[0] == 429:
                    return self.send(429, b'{"error": "slow down"}', {"Retry-After": step[1]})
                if isinstance(step, tuple) and step[0] == "raw":
                    return self.send(200, step[1])
                if isinstance(step, tuple) and step[0] == "sleep":
                    time.sleep(step[1])
                reply = (self.headers.get("Authorization", "") if step == ("echo_auth",)
                         else server.answer(text, images[0] if images else None, body.get("max_tokens") or 16))
                self.send(200, json.dumps({"object": "chat.completion", "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}]}).encode())

            def send(self, status, payload, headers=None):
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # Handler threads are joined on close: one still generating when the interpreter exits would abort it.
        self.httpd.daemon_threads = False
        self.httpd.handle_error = lambda *args: None  # the client hung up on a deliberately slow reply
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def answer(self, text: str, image: Image.Image | None, max_tokens: int) -> str:
        if self.model is None:
            return PLACEHOLDER
        from sectow.models.generation import generate

        with self.lock:  # one generation at a time: the model is shared by the handler threads
            return generate(self.model, self.processor, [(text, image)],
                            max_new_tokens=min(max_tokens, self.max_new_tokens))[0]

    def wait_idle(self, timeout_s: float = 30) -> None:
        """Until no request is being handled: a reply the client gave up on is still being generated, and
        generation reseeds torch's global RNG, which an attacker sampling in this process shares."""
        deadline = time.monotonic() + timeout_s
        while self.active and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def read_message(message: dict) -> tuple[str, list[Image.Image]]:
    """The text and the decoded images of an OpenAI chat message (string content or content parts)."""
    content = message["content"]
    if isinstance(content, str):
        return content, []
    text = "".join(part["text"] for part in content if part["type"] == "text")
    images = []
    for part in content:
        if part["type"] == "image_url":
            header, _, data = part["image_url"]["url"].partition(",")
            assert header == "data:image/png;base64", header
            images.append(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
    return text, images

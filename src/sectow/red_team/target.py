"""The model under attack behind any OpenAI-compatible chat-completions endpoint (vLLM, a hosted API):
it answers the game's defender inputs as the frozen defender does, so `game.play_round` plays against it
unchanged. Images go as base64 PNG `image_url` content parts. Retries, Retry-After and redaction are the
HTTP judge's (`ChatServer`); requests run on a thread pool, and every reply is appended to a log as it
arrives, so a failure or a kill loses no reply and a resume asks nothing twice."""

from __future__ import annotations

import base64
import io
import json
import os
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

from PIL import Image

from sectow.data.schema import load_image
from sectow.jsonl import json_lines
from sectow.judges.cache import VerdictCache, ends_with_newline, open_private
from sectow.judges.http import ChatServer, check_base_url

API_KEY_ENV = "OPENAI_API_KEY"


def check_target_url(url: str) -> None:
    """A chat-completions base URL: http(s), and no credentials in it (the key comes from OPENAI_API_KEY)."""
    check_base_url(url, "--target-url", API_KEY_ENV)


def image_part(image: Image.Image | str) -> dict:
    buffer = io.BytesIO()
    (image if isinstance(image, Image.Image) else load_image(image)).convert("RGB").save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return {"type": "image_url", "image_url": {"url": url}}


def reply_text(reply: dict):
    """The assistant's text; a refusal that an API returns in `message.refusal` (content null) is its text."""
    message = reply["choices"][0]["message"]
    content = message.get("content")
    return message.get("refusal") if content is None and isinstance(message.get("refusal"), str) else content


class ReplyLog:
    """Replies by request key, one JSONL row each, appended and flushed as they arrive, owner-only. A line
    cut short by a kill is ignored (that request is simply sent again)."""

    def __init__(self, path: Path | None):
        self.path = path
        self.rows: dict[str, str] = {}
        if path is not None and path.is_file():
            for line in json_lines(path.read_text(encoding="utf-8")):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict) and isinstance(row.get("key"), str) and isinstance(row.get("reply"), str):
                    self.rows[row["key"]] = row["reply"]

    def put(self, key: str, reply: str) -> None:
        self.rows[key] = reply
        if self.path is None:
            return
        needs_newline = self.path.is_file() and not ends_with_newline(self.path)
        with open_private(self.path, append=True) as out:
            out.write(("\n" if needs_newline else "") + json.dumps({"key": key, "reply": reply}) + "\n")
            out.flush()
            os.fsync(out.fileno())


class ChatTarget:
    """A deployed model as the defender of a round: `replies` has FrozenDefender's interface. Greedy, at
    most `max_tokens` per reply; `text_only` sends no image (for text-only endpoints). A reply is never
    invented: a request that still fails after its retries raises UserError once the requests already
    under way have finished and been logged."""

    def __init__(self, url: str, model: str, *, max_tokens: int = 256, timeout_s: float = 60, max_retries: int = 4,
                 backoff_s: float = 1.0, concurrency: int = 4, text_only: bool = False, log_path: Path | None = None):
        check_target_url(url)
        self.server = ChatServer(url, model, API_KEY_ENV, timeout_s, max_retries, backoff_s, max_tokens=max_tokens,
                                 who="target")
        self.url, self.model, self.concurrency, self.text_only = self.server.url, model, concurrency, text_only
        self.log = ReplyLog(log_path)
        self.sent = 0  # requests made by this process (replies on file are not asked again)

    def messages(self, text: str, image: Image.Image | str | None) -> list[dict]:
        if image is None or self.text_only:
            return [{"role": "user", "content": text}]
        return [{"role": "user", "content": [image_part(image), {"type": "text", "text": text}]}]

    def replies(self, inputs: list[tuple[str, Image.Image | str | None]]) -> list[str]:
        requests = [self.messages(text, image) for text, image in inputs]
        keys = [VerdictCache.key(self.model, messages) for messages in requests]
        missing = list(dict.fromkeys(key for key in keys if key not in self.log.rows))
        if missing:
            by_key = dict(zip(keys, requests))
            with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
                futures = {pool.submit(self.server.chat, by_key[key], reply_text): key for key in missing}
                done, pending = wait(futures, return_when=FIRST_EXCEPTION)
                failed = next((f for f in done if f.exception() is not None), None)
                if failed is not None:
                    for future in pending:
                        future.cancel()  # the queued ones; those under way finish and are kept below
                    done |= {f for f in wait(pending)[0] if not f.cancelled()}
                for future in done:
                    if future.exception() is None:
                        self.log.put(futures[future], self.redact(future.result()))
                        self.sent += 1
                if failed is not None:
                    raise failed.exception()
        return [self.log.rows[key] for key in keys]

    def redact(self, text: str) -> str:
        """A server that echoes the request must not carry the API key into the attack folder."""
        key = os.environ.get(API_KEY_ENV)
        return text.replace(key, "***") if key else text

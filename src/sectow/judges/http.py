"""A judge behind any OpenAI-compatible `/v1/chat/completions` server (vLLM, for instance), standard
library only, with retries and a resumable JSONL cache of verdicts."""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import ClassVar

from sectow.data.schema import Sample
from sectow.errors import UserError
from sectow.judges.base import Judge, Verdict
from sectow.judges.guard import guard_instructions, parse_guard_output, unreadable_error
from sectow.judges.refusal import is_refusal

MAX_TOKENS = 20  # "unsafe\nS1,S10,S11" and then some; the verdict is the first word
PROMPTS = ("instruct", "conversation")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a followed redirect would carry the API key to wherever it points


_OPENER = urllib.request.build_opener(_NoRedirect)


class HttpJudge(Judge):
    """Asks a chat-completions server whether each response is safe, and reads the first word of the reply.

    `prompt="instruct"` sends one user message with the Llama Guard 3 instructions around the
    conversation, which any instruction-following chat model can answer; `prompt="conversation"` sends
    the bare user/assistant turns for a guard model whose server-side chat template frames them
    (Llama-Guard-3-8B under vLLM). Greedy (temperature 0), text only.

    Timeouts, connection errors, 5xx and 429 are retried `max_retries` times with exponential backoff
    (429's Retry-After wins), then raise UserError naming the URL and the last failure. A malformed
    reply raises at once; a verdict other than safe/unsafe raises after the call, never scored safe.
    With `cache_path`, every verdict is appended (and flushed) to a JSONL file keyed by a hash of
    (model, messages), so a rerun or a resumed crash asks nothing twice. The API key is read from
    `api_key_env` at each request and appears in no cache, log or message.
    """

    name: ClassVar[str] = "http"

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout_s: float = 30,
                 max_retries: int = 4, backoff_s: float = 1.0, cache_path: str | Path | None = None,
                 prompt: str = "instruct"):
        if not base_url.startswith(("http://", "https://")):
            raise UserError(f"http judge: base_url {base_url!r} must start with http:// or https://")
        if prompt not in PROMPTS:
            raise UserError(f"http judge: prompt {prompt!r} must be one of {', '.join(PROMPTS)}")
        base = base_url.rstrip("/")
        self.url = base + ("/chat/completions" if base.endswith("/v1") else "/v1/chat/completions")
        self.model, self.api_key_env, self.prompt = model, api_key_env, prompt
        self.timeout_s, self.max_retries, self.backoff_s = timeout_s, max_retries, backoff_s
        self.cache_path = Path(cache_path) if cache_path is not None else None
        self.cache = self._read_cache()

    def messages(self, sample: Sample, response: str) -> list[dict]:
        if self.prompt == "conversation":
            return [{"role": "user", "content": sample.query}, {"role": "assistant", "content": response}]
        body = guard_instructions(f"User: {sample.query.strip()}\n\nAgent: {response.strip()}")
        return [{"role": "user", "content": body}]

    def key(self, messages: list[dict]) -> str:
        return hashlib.sha256(json.dumps([self.model, messages], sort_keys=True).encode()).hexdigest()

    def _read_cache(self) -> dict[str, dict]:
        if self.cache_path is None or not self.cache_path.is_file():
            return {}
        cache = {}
        for line in self.cache_path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash: that verdict is simply asked again
            if isinstance(row, dict) and isinstance(row.get("key"), str) and isinstance(row.get("unsafe"), bool):
                cache[row["key"]] = row
        return cache

    def judge(self, samples: list[Sample], responses: list[str]) -> list[Verdict]:
        verdicts, unread = [], []
        out = None
        if self.cache_path is not None:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            out = self.cache_path.open("a", encoding="utf-8")
            if not _ends_with_newline(self.cache_path):
                out.write("\n")  # never glue a new row onto a line cut short by a crash
        try:
            for sample, response in zip(samples, responses, strict=True):
                messages = self.messages(sample, response)
                key = self.key(messages)
                row = self.cache.get(key)
                if row is None:
                    reply = self.ask(messages)
                    parsed = parse_guard_output(reply)
                    if parsed is None:
                        unread.append((sample.id, reply))
                        continue
                    row = {"key": key, "unsafe": parsed[0], "category": parsed[1], "reply": reply}
                    self.cache[key] = row
                    if out is not None:
                        out.write(json.dumps(row) + "\n")
                        out.flush()
                verdicts.append(Verdict(refused=is_refusal(response), unsafe=row["unsafe"], judge=self.name,
                                        category=row["category"]))
        finally:
            if out is not None:
                out.close()
        if unread:
            hint = f"does {self.model} at {self.url} follow the prompt?"
            raise unreadable_error(self.name, unread, len(samples), hint)
        return verdicts

    def ask(self, messages: list[dict]) -> str:
        """The reply text for one request, retried on transient failures."""
        body = json.dumps({"model": self.model, "messages": messages, "temperature": 0,
                           "max_tokens": MAX_TOKENS}).encode()
        headers = {"Content-Type": "application/json"}
        api_key = os.environ.get(self.api_key_env)
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        failure = ""
        for attempt in range(self.max_retries + 1):
            delay = self.backoff_s * 2 ** attempt
            try:
                with _OPENER.open(urllib.request.Request(self.url, body, headers), timeout=self.timeout_s) as r:
                    raw = r.read()
                break
            except urllib.error.HTTPError as err:
                failure = f"HTTP {err.code} {err.reason}"
                if err.code != 429 and err.code < 500:
                    raise UserError(self._redact(f"http judge: {self.url} answered {failure}: "
                                                 f"{err.read(300).decode(errors='replace')}", api_key)) from None
                retry_after = _retry_after(err.headers.get("Retry-After")) if err.code == 429 else None
                delay = delay if retry_after is None else retry_after
            except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as err:
                failure = f"{err.__class__.__name__}: {getattr(err, 'reason', err)}"
            if attempt < self.max_retries:
                time.sleep(delay)
        else:
            raise UserError(self._redact(f"http judge: {self.url} failed {self.max_retries + 1} times; "
                                         f"last: {failure}", api_key))
        try:
            content = json.loads(raw)["choices"][0]["message"]["content"]
            if not isinstance(content, str):
                raise TypeError(f"content is {type(content).__name__}")
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise UserError(self._redact(f"http judge: {self.url} sent a malformed reply ({err}): "
                                         f"{raw[:200].decode(errors='replace')!r}", api_key)) from None
        return content

    @staticmethod
    def _redact(message: str, api_key: str | None) -> str:
        return message.replace(api_key, "***") if api_key else message


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as f:
        if f.seek(0, os.SEEK_END) == 0:
            return True
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None

"""A judge behind any OpenAI-compatible server (vLLM, for instance), standard library only: the server
client with its retries, the resumable JSONL cache of verdicts, and the Llama Guard 3 judge built on them
(the benchmark-native judges in native.py use the same two)."""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import ClassVar

from sectow.data.schema import Sample
from sectow.errors import UserError
from sectow.judges.base import Judge, Verdict
from sectow.judges.cache import VerdictCache
from sectow.judges.guard import guard_instructions, parse_guard_output, unreadable_error
from sectow.judges.refusal import is_refusal

MAX_TOKENS = 20  # "unsafe\nS1,S10,S11" and then some; the verdict is the first word
PROMPTS = ("instruct", "conversation")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a followed redirect would carry the API key to wherever it points


_OPENER = urllib.request.build_opener(_NoRedirect)


def check_base_url(url: str, who: str, api_key_env: str = "OPENAI_API_KEY") -> None:
    """An OpenAI-compatible base URL: http(s) with a host and a numeric port, no credentials in it (they would be
    printed, saved with the settings and sent to the name resolver); the key comes from `api_key_env`."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number in 0-65535
    except ValueError as err:
        raise UserError(f"{who}: not a usable URL ({err})") from None
    if parts.username is not None or parts.password is not None:
        raise UserError(f"{who}: the URL holds credentials; give the API key in {api_key_env} instead")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"{who} {url!r}: expected http://HOST[:PORT][/v1] or https://...")


class ChatServer:
    """An OpenAI-compatible server: `chat` posts to /v1/chat/completions, `complete` to /v1/completions (for
    a prompt that carries its own framing). Greedy (temperature 0). Timeouts, connection errors, 5xx and
    429 are retried `max_retries` times with exponential backoff (429's Retry-After wins), then raise
    UserError naming the URL and the last failure; a malformed reply raises at once. The API key is read
    from `api_key_env` at each request and appears in no message. `who` names the server in messages
    (default: the judge's)."""

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout_s: float = 30,
                 max_retries: int = 4, backoff_s: float = 1.0, max_tokens: int = MAX_TOKENS, judge: str = "http",
                 who: str | None = None):
        self.who = who or f"{judge} judge"
        check_base_url(base_url, f"{self.who}: base_url", api_key_env)
        base = base_url.rstrip("/")
        root = base if base.endswith("/v1") else base + "/v1"
        self.url, self.completions_url = root + "/chat/completions", root + "/completions"
        self.model, self.api_key_env, self.max_tokens, self.judge = model, api_key_env, max_tokens, judge
        self.timeout_s, self.max_retries, self.backoff_s = timeout_s, max_retries, backoff_s

    def chat(self, messages: list[dict], extract=lambda reply: reply["choices"][0]["message"]["content"]) -> str:
        """The reply text to one chat request (`extract` reads it from the parsed JSON reply)."""
        raw = self._post(self.url, {"model": self.model, "messages": messages, "temperature": 0,
                                    "max_tokens": self.max_tokens})
        return self._read(raw, self.url, extract)

    def complete(self, prompt: str) -> str:
        """The continuation of one raw prompt."""
        raw = self._post(self.completions_url, {"model": self.model, "prompt": prompt, "temperature": 0,
                                                "max_tokens": self.max_tokens})
        return self._read(raw, self.completions_url, lambda reply: reply["choices"][0]["text"])

    def _post(self, url: str, payload: dict) -> bytes:
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        api_key = os.environ.get(self.api_key_env)
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        failure = ""
        for attempt in range(self.max_retries + 1):
            delay = self.backoff_s * 2 ** attempt
            try:
                with _OPENER.open(urllib.request.Request(url, body, headers), timeout=self.timeout_s) as r:
                    return r.read()
            except urllib.error.HTTPError as err:
                failure = f"HTTP {err.code} {err.reason}"
                if err.code != 429 and err.code < 500:
                    raise UserError(self._redact(f"{self.who}: {url} answered {failure}: "
                                                 f"{err.read(300).decode(errors='replace')}")) from None
                retry_after = _retry_after(err.headers.get("Retry-After")) if err.code == 429 else None
                delay = delay if retry_after is None else retry_after
            except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as err:
                failure = f"{err.__class__.__name__}: {getattr(err, 'reason', err)}"
            if attempt < self.max_retries:
                time.sleep(delay)
        raise UserError(self._redact(f"{self.who}: {url} failed {self.max_retries + 1} times; last: {failure}"))

    def _read(self, raw: bytes, url: str, extract) -> str:
        try:
            content = extract(json.loads(raw))
            if not isinstance(content, str):
                raise TypeError(f"content is {type(content).__name__}")
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise UserError(self._redact(f"{self.who}: {url} sent a malformed reply ({err}): "
                                         f"{raw[:200].decode(errors='replace')!r}")) from None
        # A server may echo the request, Authorization header included: the reply goes to the verdict cache
        # and into error messages, and the key must reach neither.
        return self._redact(content)

    def _redact(self, message: str) -> str:
        api_key = os.environ.get(self.api_key_env)
        return message.replace(api_key, "***") if api_key else message


class HttpJudge(Judge):
    """Asks a chat-completions server whether each response is safe, and reads the first word of the reply.

    `prompt="instruct"` sends one user message with the Llama Guard 3 instructions around the
    conversation, which any instruction-following chat model can answer; `prompt="conversation"` sends
    the bare user/assistant turns for a guard model whose server-side chat template frames them
    (Llama-Guard-3-8B under vLLM). Retries and errors are ChatServer's. A verdict other than safe/unsafe
    raises after the call, never scored safe. With `cache_path`, verdicts are kept in a VerdictCache
    keyed by a hash of (model, messages). The API key is read from `api_key_env` at each request and
    appears in no cache, log or message.
    """

    name: ClassVar[str] = "http"

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout_s: float = 30,
                 max_retries: int = 4, backoff_s: float = 1.0, cache_path: str | Path | None = None,
                 prompt: str = "instruct"):
        if prompt not in PROMPTS:
            raise UserError(f"http judge: prompt {prompt!r} must be one of {', '.join(PROMPTS)}")
        self.server = ChatServer(base_url, model, api_key_env, timeout_s, max_retries, backoff_s)
        self.url, self.model, self.prompt = self.server.url, model, prompt
        self.prompt_version = f"llama-guard-3-{prompt}"
        self.cache = VerdictCache(cache_path)

    def messages(self, sample: Sample, response: str) -> list[dict]:
        if self.prompt == "conversation":
            return [{"role": "user", "content": sample.query}, {"role": "assistant", "content": response}]
        body = guard_instructions(f"User: {sample.query.strip()}\n\nAgent: {response.strip()}")
        return [{"role": "user", "content": body}]

    def key(self, messages: list[dict]) -> str:
        return VerdictCache.key(self.model, messages)

    def judge(self, samples: list[Sample], responses: list[str]) -> list[Verdict]:
        verdicts, unread = [], []
        with self.cache as cache:
            for sample, response in zip(samples, responses, strict=True):
                messages = self.messages(sample, response)
                key = self.key(messages)
                row = cache.get(key)
                if row is None:
                    reply = self.server.chat(messages)
                    parsed = parse_guard_output(reply)
                    if parsed is None:
                        unread.append((sample.id, reply))
                        continue
                    row = {"key": key, "unsafe": parsed[0], "category": parsed[1], "reply": reply}
                    cache.put(row)
                verdicts.append(Verdict(refused=is_refusal(response), unsafe=row["unsafe"], judge=self.name,
                                        category=row["category"]))
        if unread:
            hint = f"does {self.model} at {self.url} follow the prompt?"
            raise unreadable_error(self.name, unread, len(samples), hint)
        return verdicts


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

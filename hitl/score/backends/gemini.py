"""Gemini through google-genai: synchronous calls, and the Batch API with keyed JSONL files.

The client is built with no SDK retries: the runner retries (:mod:`hitl.retry`) with
backoff that honours Retry-After, which the SDK's own retry ignores.
"""
from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable, Mapping

from google import genai
from google.genai import types

from hitl.config import Settings
from hitl.errors import HitlError
from hitl.remote import probe_tcp, translate_error
from hitl.score.backends.base import BatchBackend, Outcome, ScoreRequest, outcome_from_text
from hitl.score.verdict import VERDICT_SCHEMA


def make_client(api_key: str, base_url: str | None = None, timeout_s: float = 120.0,
                api_version: str | None = None) -> genai.Client:
    options: dict = {"timeout": int(timeout_s * 1000)}  # the SDK takes milliseconds
    if base_url:
        options["base_url"] = base_url
    if api_version:
        options["api_version"] = api_version
    return genai.Client(api_key=api_key, http_options=types.HttpOptions(**options))


def sdk_config(thinking_budget: int | None, max_output_tokens: int) -> types.GenerateContentConfig:
    """Structured output (the verdict schema), deterministic, thinking off by default (it is billed)."""
    return types.GenerateContentConfig(
        response_mime_type="application/json",
        response_schema=VERDICT_SCHEMA,
        temperature=0.0,
        max_output_tokens=max_output_tokens,
        thinking_config=None if thinking_budget is None else types.ThinkingConfig(thinking_budget=thinking_budget),
    )


def rest_config(thinking_budget: int | None, max_output_tokens: int) -> dict:
    """The same configuration as REST JSON, for batch input lines (which the SDK does not build)."""
    config: dict = {
        "responseMimeType": "application/json",
        "responseSchema": _rest_schema(VERDICT_SCHEMA),
        "temperature": 0.0,
        "maxOutputTokens": max_output_tokens,
    }
    if thinking_budget is not None:
        config["thinkingConfig"] = {"thinkingBudget": thinking_budget}
    return config


def _rest_schema(schema: dict) -> dict:
    """JSON Schema → Gemini's OpenAPI Schema: the type names are upper case there."""
    out = {}
    for key, value in schema.items():
        if key == "type":
            out[key] = value.upper()
        elif key == "properties":
            out[key] = {name: _rest_schema(sub) for name, sub in value.items()}
        elif key == "items":
            out[key] = _rest_schema(value)
        else:
            out[key] = value
    return out


DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"


class GeminiBackend(BatchBackend):
    """Any Gemini model name (gemini-2.5-flash, gemini-2.5-pro, ...)."""

    paid = True
    key_env = ("GEMINI_API_KEY", "GOOGLE_API_KEY")

    @classmethod
    def handles(cls, model: str) -> bool:
        return model.startswith(("gemini", "models/gemini"))

    @classmethod
    def from_settings(cls, model: str, settings: Settings, base_urls: list[str] | None,
                      env: Mapping[str, str]) -> GeminiBackend:
        cfg = settings.score
        key = next((env[k] for k in cls.key_env if env.get(k)), None)
        if not key:
            raise HitlError(f"{model}: no API key; set GEMINI_API_KEY (or GOOGLE_API_KEY) in the environment")
        budget = cfg.gemini_thinking_budget
        base_url = env.get("HITL_GEMINI_BASE_URL") or None
        client = make_client(key, base_url, cfg.timeout_seconds)
        return cls(model, client, thinking_budget=None if budget < 0 else budget,
                   max_output_tokens=cfg.max_output_tokens, base_url=base_url)

    def __init__(self, model: str, client: genai.Client, thinking_budget: int | None = 0,
                 max_output_tokens: int = 1024, base_url: str | None = None):
        self.name = model
        self.client = client
        self.base_url = base_url or DEFAULT_BASE_URL
        self.config = sdk_config(thinking_budget, max_output_tokens)
        self.batch_config = rest_config(thinking_budget, max_output_tokens)

    def probe(self) -> None:
        probe_tcp(self.base_url, f"Gemini ({self.name})")

    def score(self, request: ScoreRequest, prompt: str) -> Outcome:
        started = time.perf_counter()
        try:
            response = self.client.models.generate_content(
                model=self.name,
                contents=[types.Part.from_bytes(data=request.jpeg, mime_type="image/jpeg"), prompt],
                config=self.config,
            )
        except Exception as exc:  # translated: auth stops the run, the rest is retried or recorded
            raise translate_error(exc) from exc
        latency = (time.perf_counter() - started) * 1000
        usage = response.usage_metadata
        tokens_in = usage.prompt_token_count if usage else None
        # thinking tokens are billed as output
        tokens_out = ((usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)) if usage else None
        text = _response_text(response)
        return outcome_from_text(text, tokens_in, tokens_out, latency, _finish_reason(response))

    # ---- Batch API ---------------------------------------------------------------------------

    def batch_line(self, request: ScoreRequest, prompt: str) -> dict:
        """One JSONL line of a batch input file: the key, and the request in REST form."""
        return {
            "key": request.key,
            "request": {
                "contents": [{"role": "user", "parts": [
                    {"inlineData": {"mimeType": "image/jpeg", "data": base64.b64encode(request.jpeg).decode()}},
                    {"text": prompt},
                ]}],
                "generationConfig": self.batch_config,
            },
        }

    def submit_batch(self, jsonl_path: str, display_name: str) -> tuple[str, str]:
        """Upload the input file and create the job; returns (job name, input file name)."""
        try:
            uploaded = self.client.files.upload(file=jsonl_path, config={"mime_type": "jsonl",
                                                                         "display_name": display_name})
            job = self.client.batches.create(model=self.name, src=uploaded.name,
                                             config={"display_name": display_name})
        except Exception as exc:
            raise translate_error(exc) from exc
        return job.name, uploaded.name

    def batch_status(self, name: str) -> tuple[str, str | None, dict]:
        """(state, result file name or None, stats) of a job."""
        try:
            job = self.client.batches.get(name=name)
        except Exception as exc:
            raise translate_error(exc) from exc
        state = getattr(job.state, "name", None) or str(job.state)  # an enum, or a plain string
        result_file = job.dest.file_name if job.dest is not None else None
        stats = {}
        if getattr(job, "completion_stats", None) is not None:
            stats = job.completion_stats.model_dump(exclude_none=True)
        if job.error is not None:
            stats["error"] = getattr(job.error, "message", None) or str(job.error)
        return state, result_file, stats

    def find_batch(self, display_name: str) -> str | None:
        try:
            for remote in self.client.batches.list(config={"page_size": 100}):
                if remote.display_name == display_name:
                    return remote.name
        except Exception as exc:
            raise translate_error(exc) from exc
        return None

    def cancel_batch(self, name: str) -> None:
        try:
            self.client.batches.cancel(name=name)
        except Exception as exc:
            raise translate_error(exc) from exc

    def batch_results(self, result_file: str) -> Iterable[tuple[str, Outcome]]:
        """(key, outcome) for every line of a finished job's result file, in file order."""
        try:
            data = self.client.files.download(file=result_file)
        except Exception as exc:
            raise translate_error(exc) from exc
        for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                key = item["key"]
            except (ValueError, KeyError, TypeError):
                yield f"<line {number}>", Outcome(None, raw=line[:2000], error="result line without a key",
                                                 error_kind="batch: malformed result line")
                continue
            if item.get("error"):
                err = item["error"]
                yield key, Outcome(None, raw=json.dumps(err), error=str(err.get("message", err)),
                                   error_kind=f"batch error {err.get('status') or err.get('code')}")
                continue
            response = types.GenerateContentResponse.model_validate(item.get("response") or {})
            usage = response.usage_metadata
            tokens_in = usage.prompt_token_count if usage else None
            tokens_out = ((usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)) if usage else None
            yield key, outcome_from_text(_response_text(response), tokens_in, tokens_out, None,
                                         _finish_reason(response))


def _response_text(response: types.GenerateContentResponse) -> str | None:
    parts = []
    for candidate in response.candidates or []:
        for part in (candidate.content.parts if candidate.content and candidate.content.parts else []):
            if part.text and not part.thought:
                parts.append(part.text)
        break  # one candidate is asked for
    return "".join(parts) or None


def _finish_reason(response: types.GenerateContentResponse) -> str | None:
    if response.candidates:
        reason = response.candidates[0].finish_reason
        return getattr(reason, "name", None) or (str(reason) if reason else None)
    if response.prompt_feedback and response.prompt_feedback.block_reason:
        return f"blocked ({response.prompt_feedback.block_reason})"
    return None

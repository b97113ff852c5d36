"""Scoring backends: Gemini (google-genai), OpenAI-compatible servers (openai SDK), an offline baseline."""
from hitl.score.backends.base import Backend, BatchBackend, Outcome, ScoreRequest
from hitl.score.backends.registry import backend_class, make_backend
from hitl.score.verdict import Verdict

__all__ = ["Backend", "BatchBackend", "Outcome", "ScoreRequest", "Verdict", "backend_class", "make_backend"]

"""Scoring backends: Gemini (google-genai), OpenAI-compatible servers (openai SDK), an offline baseline."""
from .base import AuthError, Backend, Outcome, RetryableError, ScoreRequest, Verdict

__all__ = ["AuthError", "Backend", "Outcome", "RetryableError", "ScoreRequest", "Verdict"]

"""Optional pytest fixtures; use with ``from tests.fakes.fixtures import fake_gemini, fake_openai``
in a test module (pytest picks up imported fixtures)."""
from __future__ import annotations

import pytest

from .gemini import FakeGemini
from .openai_compat import FakeOpenAI


@pytest.fixture
def fake_gemini():
    with FakeGemini() as server:
        yield server
        assert not server.errors, server.errors[0]


@pytest.fixture
def fake_openai():
    with FakeOpenAI() as server:
        yield server
        assert not server.errors, server.errors[0]

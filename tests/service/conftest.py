from __future__ import annotations

import pytest

from service.app import create_app
from service.settings import Settings
from tests.helpers import ServerThread


def make_server(bundle, **overrides) -> ServerThread:
    """A server on ``bundle``; transformers in float32 unless ``backend`` / ``dtype`` say otherwise (service
    behaviour is tested on the reference engine; the default selection has its own tests)."""
    settings = Settings(bundle=bundle, threads=2, **{"backend": "transformers", "dtype": "float32", **overrides})
    return ServerThread(create_app(settings))


@pytest.fixture(scope="module")
def server(tiny_bundle, redis_url):
    srv = make_server(tiny_bundle, redis_url=redis_url, max_reasoning_tokens=64, default_reasoning_tokens=8).start()
    yield srv
    srv.stop()

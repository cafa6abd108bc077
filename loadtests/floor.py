"""The cache-hit benchmark's floor: bare FastAPI under uvicorn with ``r2ec serve``'s uvicorn settings (httptools,
one worker, loopback, no access log, the same keep-alive and connection limits), answering
``POST /v1/recommend`` with a pre-rendered body (the bench hands it one of our own cache-hit replies, so the bytes
on the wire are the same). What is left between it and ``r2ec serve``'s cache hit is our own work per request.

    python -m loadtests.floor --port 8009 --body reply.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fastapi import FastAPI, Request, Response


def create_floor_app(body: bytes) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.post("/v1/recommend")
    async def recommend(request: Request) -> Response:
        await request.body()  # read as any handler must; never parsed
        return Response(content=body, media_type="application/json")

    @app.get("/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from service.settings import Settings

    defaults = Settings.model_fields
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True, help="Loopback port to listen on.")
    parser.add_argument("--body", type=Path, required=True, help="File whose bytes every reply carries.")
    args = parser.parse_args(argv)
    uvicorn.run(
        create_floor_app(args.body.read_bytes()),
        host="127.0.0.1",
        port=args.port,
        log_config=None,
        log_level="warning",
        access_log=False,
        http="httptools",
        timeout_keep_alive=int(defaults["keep_alive_s"].default),
        limit_concurrency=int(defaults["max_connections"].default),
        workers=1,
    )


if __name__ == "__main__":
    main()

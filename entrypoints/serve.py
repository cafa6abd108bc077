"""``r2ec serve``: the HTTP service (flags generated from the service settings)."""

from __future__ import annotations

import typer

from entrypoints.common import app, threads_for


@app.command(
    "serve",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def serve(ctx: typer.Context) -> None:
    """Serve a bundle over HTTP (flags: r2ec serve --help; each is also an env var R2EC_<NAME>)."""
    from model_export.demo import ensure_demo_bundle
    from service.cli import parse_settings
    from service.server import run

    settings = parse_settings(ctx.args)
    if settings.threads:
        threads_for(settings.threads)
    # Without --bundle the embedded default is served: the demo bundle, built on first use in the background
    # (``/health`` answers at once, ``/ready`` once it is loaded).
    run(settings, default_bundle=ensure_demo_bundle)

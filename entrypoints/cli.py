"""``r2ec``: one console script; each command group lives in its own module and registers on import."""

from __future__ import annotations

from entrypoints import bench, bundles, data, evaluation, serve, train  # noqa: F401  (they register commands)
from entrypoints.common import app


def main() -> None:
    app()


if __name__ == "__main__":
    main()

"""Write a locust run's per-task latencies (and the streaming TTFT) into docs/benchmarks.md.

    python -m loadtests.locust_report --csv results/locust --docs docs/benchmarks.md --command "locust ..."

The section between its markers is rewritten in place; the rest of the document is left as it is.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from loadtests.faults import write_docs
from loadtests.stats import summary_from_csv

START, END = "<!-- locust:start -->", "<!-- locust:end -->"


SERVER = "`make serve` (the demo bundle, in-process cache)"


def render(prefix: Path, command: str, machine: str, server: str = SERVER) -> str:
    stats = summary_from_csv(prefix)
    rows = [
        f"| {name} | {int(s['requests'])} | {int(s['failures'])} | {s['rps']:.2f} | {s['p50_ms']:.0f} | "
        f"{s['p95_ms']:.0f} | {s['p99_ms']:.0f} |"
        for name, s in stats.items()
        if name != "Aggregated"
    ]
    agg = stats.get("Aggregated", {})
    return (
        "\n".join(
            [
                START,
                "## The README's locust command on the demo bundle",
                "",
                f"`{command}` against {server} on {machine}.",
                "`SSE ttft` is the time to the first reasoning delta of a streamed request, `SSE result` the time",
                "to its result event (custom metrics of the streaming task).",
                "",
                "| task | requests | failures | req/s | p50 ms | p95 ms | p99 ms |",
                "|---|---|---|---|---|---|---|",
                *rows,
                "",
                f"Aggregated: {int(agg.get('requests', 0))} requests, {int(agg.get('failures', 0))} failures, "
                f"{agg.get('rps', 0):.2f} req/s.",
                END,
            ]
        )
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.locust_report")
    parser.add_argument("--csv", type=Path, required=True, help="locust's --csv prefix")
    parser.add_argument("--docs", type=Path, required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--machine", default="this machine")
    parser.add_argument("--server", default=SERVER, help="what served, e.g. with the engine /info reported")
    args = parser.parse_args(argv)
    section = render(args.csv, args.command, args.machine, args.server)
    write_docs(args.docs, section, START, END)
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

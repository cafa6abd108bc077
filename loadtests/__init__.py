"""Load tests (locust) and the side-by-side benchmark (``r2ec bench``)."""

# The bench's scenarios, in run order: here, so that the CLI lists them without importing the harness.
SCENARIOS = ("capture", "budget", "overhead", "scaling", "hot", "catalog", "vllm")

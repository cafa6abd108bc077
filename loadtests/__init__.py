"""Load tests (locust) and the side-by-side benchmark (``r2ec bench``)."""

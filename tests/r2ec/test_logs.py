from __future__ import annotations

import json
import logging

from r2ec.logs import JsonFormatter, redact


def test_redact_url_passwords_and_bearer_tokens():
    assert redact("redis://:s3cret@10.0.0.1:6379/0") == "redis://:***@10.0.0.1:6379/0"
    assert redact("rediss://user:p%40ss@host/1 and more") == "rediss://user:***@host/1 and more"
    assert redact("Authorization: Bearer abc.DEF-123") == "Authorization: Bearer ***"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"  # nothing secret, nothing changed


def test_every_field_of_a_log_line_is_redacted():
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "connect to %s", ("redis://:pw@h:1/0",), None)
    record.url = "redis://:pw@h:1/0"
    record.nested = {"settings": {"redis_url": "redis://:pw@h:1/0"}}
    line = JsonFormatter().format(record)
    assert "pw@" not in line
    assert json.loads(line)["nested"]["settings"]["redis_url"] == "redis://:***@h:1/0"

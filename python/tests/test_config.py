"""The configuration file from Python: the core's loader, its errors, the
stores it opens and the precedence over decorator arguments."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest

import toolops
from toolops import PolicyError, RetryableError, cache_manager, readonly


def write(tmp_path, text: str) -> str:
    path = tmp_path / "toolops.toml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_file_stores_and_tool_fields_win_over_the_decorator(tmp_path):
    db = tmp_path / "cache.db"
    path = write(tmp_path, f"""
        [stores.filecache]
        type = "sqlite"
        path = "{db}"

        [tools.cfg_flaky]
        retry.max_attempts = 3
        retry.initial_backoff = "1ms"
        retry.max_backoff = "2ms"
        cache.enabled = false
    """)
    assert toolops.configure(path) == path
    assert "filecache" in cache_manager.names()

    calls = []

    # retry_count=0 in the code; the file allows 3 attempts and no cache.
    @readonly(name="cfg_flaky", cache_backend="filecache", retry_count=0)
    def flaky(q: str) -> str:
        calls.append(q)
        if len(calls) % 3:
            raise RetryableError("try again")
        return q.upper()

    assert flaky("a") == "A"
    assert len(calls) == 3
    assert flaky("a") == "A"  # Not cached: the file turned the cache off.
    assert len(calls) == 6

    # A tool the file does not name keeps the decorator's policy, and the
    # configured store holds its entries.
    @readonly(name="cfg_plain", cache_backend="filecache", cache_ttl=60)
    def plain(q: str) -> str:
        return q * 2

    assert plain("x") == "xx"
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from toolops_entries").fetchone()[0] >= 1


def test_bad_file_raises_with_file_line_and_field(tmp_path):
    path = write(tmp_path, """
        [tools.web_search]
        retry.max_attempts = -1
    """)
    with pytest.raises(PolicyError) as e:
        toolops.configure(path)
    assert f"{path}:3: tools.web_search.retry.max_attempts is -1" in str(e.value)
    with pytest.raises(PolicyError) as e:
        toolops.configure(tmp_path / "missing.toml")
    assert "cannot read" in str(e.value)


def test_environment_overrides_the_file_in_a_fresh_process(tmp_path):
    path = write(tmp_path, """
        [tools.cfg_env]
        retry.max_attempts = 1
    """)
    program = textwrap.dedent("""
        from toolops import readonly, RetryableError
        calls = []
        @readonly(name="cfg_env", retry_count=0, retry_delay=0.001, cache_backend=None)
        def tool(q: str) -> str:
            calls.append(q)
            if len(calls) < 2:
                raise RetryableError("again")
            return q
        print(tool("ok"), len(calls))
    """)
    env = dict(os.environ, TOOLOPS_CONFIG=path, TOOLOPS__TOOLS__CFG_ENV__RETRY__MAX_ATTEMPTS="2")
    out = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok", "2"]

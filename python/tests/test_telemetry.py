"""Telemetry through the Python package: metrics by tool, the Prometheus
text and its HTTP endpoint, spans received by a real HTTP server, JSON logs,
and secrets kept out of all of them."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest

import toolops
from toolops import readonly


class Collector:
    """An OTLP/HTTP receiver on a free loopback port that keeps the bodies."""

    def __init__(self) -> None:
        bodies = self.bodies = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                bodies.append((self.path, self.rfile.read(length)))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def spans(self):
        out = []
        for _, body in self.bodies:
            for rs in json.loads(body)["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    for s in ss["spans"]:
                        s["attrs"] = {a["key"]: a["value"] for a in s["attributes"]}
                        out.append(s)
        return out

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_metrics_and_the_prometheus_endpoint_count_hits_and_money_saved():
    @readonly(cache_ttl=60, cost_per_call=0.5, name="priced_lookup")
    def priced_lookup(query: str) -> str:
        return "answer " + query

    for _ in range(5):
        assert priced_lookup("paris") == "answer paris"
    m = toolops.metrics()["priced_lookup"]
    assert m["counters"]["fresh_hit"] == 4
    assert m["upstream_calls"] == 1
    assert m["money_saved"] == pytest.approx(2.0)
    assert m["breaker_state"] == "closed"
    assert m["latency"]["count"] + m["latency"]["pending_hits"] == 5

    server = toolops.serve_metrics(port=0)
    base = f"http://127.0.0.1:{server.port}"
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        assert r.status == 200
        text = r.read().decode()
    assert 'toolops_calls_total{tool="priced_lookup",outcome="fresh_hit"} 4' in text
    assert 'toolops_money_saved_total{tool="priced_lookup"} 2' in text
    assert "toolops_call_duration_seconds_bucket" in text
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(base + "/nothing", timeout=10)
    assert missing.value.code == 404
    with pytest.raises(ValueError, match="not an IP address"):
        toolops.serve_metrics(port=0, host="localhost")


def test_spans_reach_an_otlp_collector_without_secrets(capfd):
    collector = Collector()
    try:
        toolops.configure_tracing(collector.url, sampler="always_on", service_name="py-agent",
                                  record_arguments=True, schedule_delay=0.05)
        toolops.configure_logging("json", level="info")

        @readonly(cache_ttl=60, name="weather")
        def weather(city: str, api_key: str) -> str:
            toolops._core.log("warning", "tool.note", f"token={api_key} used", "weather")
            return "sunny in " + city

        with toolops.tool_call_id("call_7"):
            assert weather("paris", "sk-SECRET-1") == "sunny in paris"
        assert weather("paris", "sk-SECRET-2") == "sunny in paris"  # Same key: a hit.
        assert toolops.flush_tracing(10)
        spans = [s for s in collector.spans() if s["name"] == "execute_tool weather"]
        assert len(spans) == 2
        miss, hit = spans
        assert miss["attrs"]["gen_ai.operation.name"]["stringValue"] == "execute_tool"
        assert miss["attrs"]["gen_ai.tool.name"]["stringValue"] == "weather"
        assert miss["attrs"]["toolops.cache.result"]["stringValue"] == "miss"
        assert miss["attrs"]["gen_ai.tool.call.id"]["stringValue"] == "call_7"
        assert "gen_ai.tool.call.id" not in hit["attrs"]
        assert hit["attrs"]["toolops.cache.result"]["stringValue"] == "fresh"
        attempts = [s for s in collector.spans() if s["name"] == "upstream_attempt weather"]
        assert [a["parentSpanId"] for a in attempts] == [miss["spanId"]]
        bodies = b"".join(body for _, body in collector.bodies)
        assert b"SECRET" not in bodies
        arguments = json.loads(miss["attrs"]["gen_ai.tool.call.arguments"]["stringValue"])
        assert arguments == {"city": "paris", "api_key": "***"}
        # The stored form: the binding's one-letter type tag, then the text.
        assert miss["attrs"]["gen_ai.tool.call.result"]["stringValue"] == "ssunny in paris"
        err = capfd.readouterr().err
        lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
        notes = [line for line in lines if line["event"] == "tool.note"]
        assert notes and notes[0]["tool"] == "weather" and notes[0]["level"] == "warning"
        assert "SECRET" not in err
    finally:
        toolops.configure_tracing(enabled=False)
        toolops.configure_logging("text", level="warning")
        collector.close()


def test_bad_tracing_options_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="endpoint"):
        toolops.configure_tracing()
    with pytest.raises(ValueError, match="sampler"):
        toolops.configure_tracing("http://127.0.0.1:1/v1/traces", sampler="sometimes")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        toolops.configure_tracing("http://127.0.0.1:1/v1/traces", ratio=2.0)


_CONFIGURED_AGENT = """
import json, sys, urllib.request
import toolops
from toolops import readonly
from toolops.config import applied_metrics_port

toolops.configure(sys.argv[1])

@readonly(name="cfg_telemetry", cache_backend=None, retry_count=0)
def tool(i: int) -> int:
    return i

for i in range(400):
    tool(i)
toolops._core.log("info", "test.info", "an info line", "")
toolops._core.log("error", "test.error", "an error line", "")
assert toolops.flush_tracing(10)
port = applied_metrics_port()
with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
    text = r.read().decode()
print(json.dumps({"port": port,
                  "served": 'toolops_calls_total{tool="cfg_telemetry",outcome="upstream_success"} 400'
                            in text}))
"""


def test_the_files_telemetry_is_applied_and_the_environment_wins(tmp_path):
    from conftest import free_port

    collector = Collector()
    try:
        base = collector.url[: -len("/v1/traces")]
        port = free_port()
        path = tmp_path / "toolops.toml"
        path.write_text(f"""
[telemetry]
metrics_port = {port}
otlp_endpoint = "{base}"
sampling_ratio = 0.25
service_name = "file-agent"
log_format = "json"
log_level = "error"
""")

        def run(**env):
            clean = {k: v for k, v in os.environ.items()
                     if not k.startswith(("OTEL_", "TOOLOPS_"))}
            out = subprocess.run([sys.executable, "-c", _CONFIGURED_AGENT, str(path)],
                                 env={**clean, **env}, capture_output=True, text=True,
                                 timeout=120)
            assert out.returncode == 0, out.stderr
            return json.loads(out.stdout.splitlines()[-1]), out.stderr

        # The file alone: its port serves, its level filters, its ratio samples.
        result, err = run()
        assert result == {"port": port, "served": True}
        events = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
        assert "test.error" in events and "test.info" not in events
        spans = [s for s in collector.spans() if s["name"] == "execute_tool cfg_telemetry"]
        assert 40 < len(spans) < 160  # 400 * 0.25 +- 6 standard deviations (8.7).
        assert b"file-agent" in collector.bodies[0][1]

        # The environment wins: another port, another level, every call traced.
        collector.bodies.clear()
        other = free_port()
        result, err = run(TOOLOPS__TELEMETRY__METRICS_PORT=str(other), TOOLOPS_LOG_LEVEL="info",
                          OTEL_TRACES_SAMPLER="always_on")
        assert result == {"port": other, "served": True}
        events = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
        assert "test.info" in events
        spans = [s for s in collector.spans() if s["name"] == "execute_tool cfg_telemetry"]
        assert len(spans) == 400
    finally:
        collector.close()


def test_a_metrics_port_in_use_raises_policy_error_naming_the_field(tmp_path):
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        path = tmp_path / "toolops.toml"
        path.write_text(f"[telemetry]\nmetrics_port = {held.getsockname()[1]}\n")
        program = ("import sys, toolops\n"
                   "try:\n"
                   "    toolops.configure(sys.argv[1])\n"
                   "except toolops.PolicyError as e:\n"
                   "    print(e)\n")
        out = subprocess.run([sys.executable, "-c", program, str(path)], capture_output=True,
                             text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "telemetry.metrics_port" in out.stdout and "TOOLOPS__TELEMETRY__METRICS_PORT" in out.stdout

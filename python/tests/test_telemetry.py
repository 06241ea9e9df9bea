"""Telemetry through the Python package: metrics by tool, the Prometheus
text and its HTTP endpoint, spans received by a real HTTP server, JSON logs,
and secrets kept out of all of them."""

from __future__ import annotations

import http.server
import json
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

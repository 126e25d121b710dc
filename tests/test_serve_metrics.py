"""The server's Prometheus measurements."""

from __future__ import annotations

from charrnn.serve.metrics import ServerMetrics


def test_measurements_in_the_text_format() -> None:
    m, other = ServerMetrics(), ServerMetrics()  # separate registries
    observe = m.observer("run")
    observe(3, 1, 3, 0.001)
    observe(0, 0, 0, 0.0)
    m.request("/v1/completions", 200)
    m.first.observe(0.02)
    text = m.text().decode()
    assert 'charrnn_active_streams{model="run"} 0.0' in text
    assert 'charrnn_generated_tokens_total{model="run"} 3.0' in text
    assert 'charrnn_requests_total{route="/v1/completions",status="200"} 1.0' in text
    assert "charrnn_step_seconds_count 1.0" in text
    assert "charrnn_time_to_first_character_seconds_count 1.0" in text
    assert "charrnn_requests_total{" not in other.text().decode()

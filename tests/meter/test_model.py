"""bench/model.py: the capacity and cost model's arithmetic and its inputs from docs/benchmarks.md."""

from __future__ import annotations

import pytest

from bench import model


def test_seed_cross_checks() -> None:
    # the seed: 200 concurrent relayed users at 2 Mbit/s cost about $11,000 a month at $0.08/GB
    inputs = {**model.INPUTS, "per_gb": model.Input("per_gb", 0.08, "$/GB", "seed")}
    row = model.plan(1000, 0.1, 2.0, inputs)
    assert row.egress_gbps == pytest.approx(0.4)
    assert row.monthly_cost == pytest.approx(10_512, rel=1e-3)
    # the seed: 10,000 concurrent calls need about 10 TURN servers, one Redis
    ten_k = model.plan(10_000, 0.2, 1.5, model.INPUTS)
    assert (ten_k.turn_nodes, ten_k.redis, ten_k.signaling_processes) == (9, 1, 2)


def test_signaling_scales_with_connections() -> None:
    row = model.plan(1_000_000, 0.1, 1.5, model.INPUTS)
    assert row.signaling_processes == 40  # 2M WebSockets at 50,000 per process


def test_inputs_come_from_the_benchmark_tables() -> None:
    text = "| turnkit (memory) | 30,001 | 3 | 10 |\n| GET /api/ice-servers (JWT) | 1,234 | 14 | 18.8 |\n"
    got = model.from_benchmarks(model.INPUTS, text)
    assert got["signaling_msgs_per_s"].value == 30_001 and got["ice_req_per_s"].value == 1_234
    assert got["kib_per_connection"] == model.INPUTS["kib_per_connection"]  # absent: unchanged


def test_update_replaces_only_the_model_block() -> None:
    doc = f"intro\n{model.START}\nold\n{model.END}\noutro\n"
    assert model.update(doc, f"{model.START}\nnew\n{model.END}") == f"intro\n{model.START}\nnew\n{model.END}\noutro\n"
    assert model.update("intro\n", "B") == "intro\n\nB\n"

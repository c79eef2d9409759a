"""Relay connectivity probes: STUN/TURN checks per node and transport, built on aioice.

Layout: `result` (typed results), `targets` (what to probe), `client` (aioice sessions),
`checks` (one async function per check), `runner` (concurrency, timeouts), `report` (table,
JSON, Prometheus textfile), `history` (SQLite), `record` (health file/Redis), `uclient`
(coturn's turnutils_uclient, for comparison runs and benchmarks).
"""

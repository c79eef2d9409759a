"""Usage metering: coturn statsdb events → per user/node/region/day usage → central store (issue 14).

`events` parses statsdb channels (pure), `ledger` turns events into usage rows (pure),
`buffer` is the durable on-node SQLite outbox, `central` the store batches go to, `service` the loop.
"""

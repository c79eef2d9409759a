"""`turnkit signaling serve` as a real process: startup errors, graceful shutdown, and several processes on Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.daemons import free_port
from tests.helpers.signaling import (
    JWT_SECRET,
    TIMEOUT,
    RedisProc,
    clean_env,
    client,
    make_token,
    serving,
    turnkit_command,
    write_config,
)

#: A kill -9'd process's members are gone after its heartbeat TTL (6 s) plus one reaper period (2 s).
REAP_BOUND = 8.0


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(turnkit_command(*args), env=env, capture_output=True, text=True, timeout=60)


def test_missing_jwt_secret_is_one_line_and_exit_2(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    res = run_cli("signaling", "serve", "--config", str(cfg.path), "--port", str(free_port()), env=clean_env())
    assert res.returncode == 2
    assert res.stderr == (
        "error: signaling.jwt: HS256 needs a secret in the `TURNKIT_JWT_SECRET` environment variable\n"
    )


def test_missing_keyring_is_one_line_and_exit_2(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    cfg.secrets_path.unlink()
    res = run_cli("signaling", "serve", "--config", str(cfg.path), env=clean_env(TURNKIT_JWT_SECRET=JWT_SECRET))
    assert res.returncode == 2
    assert res.stderr == f"error: {cfg.secrets_path}: no secret keyring (run `turnkit secret init`)\n"


def test_missing_public_key_file_is_one_line(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, signaling={"jwt": {"algorithms": ["RS256"], "public_key_file": "nope.pem"}})
    res = run_cli("signaling", "serve", "--config", str(cfg.path), env=clean_env())
    assert res.returncode == 2
    assert res.stderr.startswith("error: signaling.jwt.public_key_file: cannot read `")
    assert len(res.stderr.splitlines()) == 1


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = run_cli(
            "signaling", "serve", "--config", str(cfg.path), "--port", str(port),
            env=clean_env(TURNKIT_JWT_SECRET=JWT_SECRET),
        )  # fmt: skip
    assert res.returncode == 3
    assert res.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}: ")
    assert "Traceback" not in res.stderr


@pytest.mark.asyncio
async def test_sigterm_closes_connections_1001_and_exits_0(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    log = tmp_path / "server.log"
    with serving(cfg, log) as (proc, port):
        token = make_token("alice")
        async with client(port, "alice") as a, client(port, "bob") as b:
            aid = (await a.join("room"))["you"]
            await b.join("room")
            await a.expect("user-joined")
            secret_sdp = "v=0\r\no=- 4242 SECRET-SDP-BODY\r\n"
            await b.send(type="offer", to=aid, sdp={"type": "offer", "sdp": secret_sdp})
            await a.expect("offer")
            proc.send_signal(signal.SIGTERM)
            assert await a.closed_code() == 1001
            assert await b.closed_code() == 1001
        assert await asyncio.to_thread(proc.wait, 30) == 0
    text = log.read_text()
    assert "signaling listening on 127.0.0.1" in text and "signaling stopped" in text
    for leaked in (token, JWT_SECRET, "SECRET-SDP-BODY"):
        assert leaked not in text


@pytest.mark.asyncio
async def test_processes_share_rooms_through_redis_and_reap_the_dead(tmp_path: Path, redis_server: RedisProc) -> None:
    # A dead process's members are parked for resume first; a 1 s window keeps the wait short.
    cfg = write_config(tmp_path, signaling={"redis_url": redis_server.url, "resume_window": 1})
    with (
        serving(cfg, tmp_path / "one.log") as (_one, port1),
        serving(cfg, tmp_path / "two.log") as (two, port2),
    ):
        async with client(port1, "alice") as a, client(port2, "bob") as b:
            aid = (await a.join("span"))["you"]
            joined = await b.join("span")
            bid = joined["you"]
            assert joined["users"] == [aid]
            assert (await a.expect("user-joined"))["id"] == bid
            await b.send(type="offer", to=aid, sdp={"type": "offer", "sdp": "v=0 offer"})
            assert await a.expect("offer") == {
                "type": "offer",
                "from": bid,
                "sdp": {"type": "offer", "sdp": "v=0 offer"},
            }
            await a.send(type="answer", to=bid, sdp={"type": "answer", "sdp": "v=0 answer"})
            assert (await b.expect("answer"))["from"] == aid
            await b.send(type="ice-candidate", to=aid, candidate={"candidate": "c1", "sdpMid": "0"})
            assert (await a.expect("ice-candidate"))["candidate"] == {"candidate": "c1", "sdpMid": "0"}
            # the room is full across processes
            async with client(port1, "carol") as c:
                await c.send(type="join-room", room="span")
                assert (await c.expect("error"))["code"] == "room-full"

            os.kill(two.pid, signal.SIGKILL)
            # bounded: heartbeat TTL + one reaper period, with slack for a loaded machine
            left = await a.expect("user-left", timeout=REAP_BOUND + 1 + TIMEOUT)
            assert left == {"type": "user-left", "id": bid}
        # the dead process's member is really gone: its slot can be taken
        async with client(port1, "alice") as a2, client(port1, "dave") as d:
            await a2.join("span")
            assert (await d.join("span"))["users"]

"""HTTP side of the signaling server: auth on upgrade, API routes, health, metrics, static files."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.helpers.signaling import JWT_SECRET, RedisProc, StartServer, eventually, make_token, write_config
from turnkit import credentials, health, keyring
from turnkit.credentials import Verdict
from turnkit.errors import ConfigError

pytestmark = pytest.mark.asyncio


async def get(url: str, **kw: Any) -> httpx.Response:
    """An HTTP GET that does not block the event loop the in-process server runs on."""
    async with httpx.AsyncClient(timeout=kw.pop("timeout", 15)) as client:
        return await client.get(url, **kw)


async def raw_get(port: int, path: str) -> tuple[int, bytes]:
    """GET with the path sent exactly as given (no client-side normalisation of `..`)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def refused(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """Try a WebSocket upgrade that must be refused; the HTTP status and JSON body."""
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, additional_headers=headers):
            pass
    resp = info.value.response
    assert resp.headers["Content-Type"] == "application/json"
    return resp.status_code, json.loads(resp.body)


async def test_upgrade_refused_with_401_json(start_server: StartServer) -> None:
    async with start_server(signaling={"jwt": {"audience": "turnkit", "issuer": "https://auth.test"}}) as srv:
        good = {"aud": "turnkit", "iss": "https://auth.test"}
        cases = {
            "missing token": srv.ws_url(),
            "token malformed": srv.ws_url("not-a-jwt"),
            "token signature invalid": srv.ws_url(make_token(secret="another-secret-of-sufficient-length!", **good)),
            "token expired": srv.ws_url(make_token(ttl=-120, **good)),
            "token audience not accepted": srv.ws_url(make_token(aud="someone-else", iss="https://auth.test")),
            "token issuer not accepted": srv.ws_url(make_token(aud="turnkit", iss="https://evil.test")),
            "token not yet valid": srv.ws_url(make_token(nbf=int(time.time()) + 600, **good)),
        }
        for reason, url in cases.items():
            assert await refused(url) == (401, {"error": reason}), reason
        no_sub = jwt.encode({"exp": int(time.time()) + 60, **good}, JWT_SECRET, algorithm="HS256")
        assert await refused(srv.ws_url(no_sub)) == (401, {"error": "token lacks the `sub` claim"})
        # the Authorization header works as well as ?token=
        async with connect(srv.ws_url(), additional_headers={"Authorization": f"Bearer {make_token(**good)}"}) as ws:
            await ws.send('{"type": "ice-servers"}')
            assert json.loads(await ws.recv())["type"] == "ice-servers"
        assert await refused(srv.ws_url(make_token(**good), region="mars")) == (400, {"error": "unknown region `mars`"})


def _pem(key: Any) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
async def test_asymmetric_keys_from_pem_file(start_server: StartServer, tmp_path: Path, alg: str) -> None:
    make = {
        "RS256": lambda: rsa.generate_private_key(65537, 2048),
        "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
    }
    key, stranger = make[alg](), make[alg]()
    (tmp_path / "pub.pem").write_bytes(_pem(key))
    jwt_cfg = {"algorithms": [alg], "public_key_file": str(tmp_path / "pub.pem")}
    async with start_server(signaling={"jwt": jwt_cfg}) as srv:
        async with connect(srv.ws_url(make_token(secret=key, alg=alg))) as ws:  # type: ignore[arg-type]
            await ws.send('{"type": "join-room", "room": "pk"}')
            assert json.loads(await ws.recv())["type"] == "all-users"
        assert await refused(srv.ws_url(make_token(secret=stranger, alg=alg))) == (  # type: ignore[arg-type]
            401,
            {"error": "token signature invalid"},
        )
        assert await refused(srv.ws_url(make_token())) == (401, {"error": "token algorithm not accepted"})


async def test_jwks_file_with_key_ids(start_server: StartServer, tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(65537, 2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    keys = [
        {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key())), "kid": "r1", "alg": "RS256"},
        {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key())), "kid": "e1", "alg": "ES256"},
    ]
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": keys}))
    jwt_cfg = {"algorithms": ["RS256", "ES256", "HS256"], "jwks_file": str(tmp_path / "jwks.json")}
    async with start_server(signaling={"jwt": jwt_cfg}) as srv:
        now = int(time.time())
        claims = {"sub": "jwks-user", "exp": now + 60}
        for key, alg, kid in ((rsa_key, "RS256", "r1"), (ec_key, "ES256", "e1")):
            token = jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})
            r = await get(f"{srv.http}/api/ice-servers", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text
        wrong_kid = jwt.encode(claims, rsa_key, algorithm="RS256", headers={"kid": "e1"})
        r = await get(f"{srv.http}/api/ice-servers", headers={"Authorization": f"Bearer {wrong_kid}"})
        assert (r.status_code, r.json()) == (401, {"error": "no key for this token"})
        r = await get(f"{srv.http}/api/ice-servers", headers={"Authorization": f"Bearer {make_token()}"})
        assert r.status_code == 200  # HS256 still allowed here


async def test_api_ice_servers_and_turn(start_server: StartServer) -> None:
    async with start_server(project={"ttl": 600}) as srv:
        ring = keyring.load(srv.cfg.secrets_path)
        r = await get(f"{srv.http}/api/ice-servers")
        assert (r.status_code, r.json()) == (401, {"error": "missing token"})
        auth = {"Authorization": f"Bearer {make_token('carol')}"}
        doc = (await get(f"{srv.http}/api/ice-servers", headers=auth)).json()
        assert set(doc) == {"iceServers", "ttl", "expiresAt"} and doc["ttl"] == 600
        turn = next(s for s in doc["iceServers"] if "credential" in s)
        now = int(time.time())
        assert credentials.verify(turn["username"], turn["credential"], ring.accepted, now) is Verdict.OK
        assert abs(doc["expiresAt"] - (now + 600)) <= 5

        r = await get(f"{srv.http}/api/turn", params={"service": "turn", "username": "carol"}, headers=auth)
        rest = r.json()
        assert set(rest) == {"username", "password", "ttl", "uris"} and rest["ttl"] == 600
        assert rest["username"].endswith(":carol")
        assert all(u.startswith(("turn:", "turns:")) for u in rest["uris"]) and rest["uris"]
        assert credentials.verify(rest["username"], rest["password"], ring.accepted, now) is Verdict.OK
        r = await get(f"{srv.http}/api/turn", params={"service": "turn", "username": "mallory"}, headers=auth)
        assert (r.status_code, r.json()) == (403, {"error": "username: must be the token's subject"})
        r = await get(f"{srv.http}/api/turn", params={"service": "stun"}, headers=auth)
        assert (r.status_code, r.json()) == (400, {"error": "service: must be `turn`"})
        assert (await get(f"{srv.http}/api/turn", params={"service": "turn"})).status_code == 401


async def test_secret_rotation_is_picked_up_without_restart(start_server: StartServer, tmp_path: Path) -> None:
    secrets_file = tmp_path / "elsewhere" / "ring.json"
    secrets_file.parent.mkdir()
    keyring.save(secrets_file, keyring.init(int(time.time())))
    async with start_server(env={"TURNKIT_SECRETS_FILE": str(secrets_file)}) as srv:
        auth = {"Authorization": f"Bearer {make_token('dave')}"}
        first = (await get(f"{srv.http}/api/turn", headers=auth)).json()
        old = keyring.load(secrets_file)
        assert credentials.verify(first["username"], first["password"], [old.primary.value], int(time.time())) == "ok"
        new = keyring.rotate(old, int(time.time()))
        keyring.save(secrets_file, new)

        async def issued_with_new_key() -> bool:  # the keyring file is looked at once a second
            second = (await get(f"{srv.http}/api/turn", headers=auth)).json()
            now = int(time.time())
            if credentials.verify(second["username"], second["password"], [new.primary.value], now) is Verdict.OK:
                return True
            assert credentials.verify(second["username"], second["password"], [old.primary.value], now) is Verdict.OK
            return False

        await eventually(issued_with_new_key)
        assert (await get(f"{srv.http}/readyz")).status_code == 200
        secrets_file.unlink()
        r = await get(f"{srv.http}/readyz")
        assert r.status_code == 503 and "no secret keyring" in r.json()["reason"]
        # the last good keyring keeps issuing meanwhile
        assert (await get(f"{srv.http}/api/turn", headers=auth)).status_code == 200


@pytest.mark.parametrize("configured", [True, False], ids=["health_file", "default-path"])
async def test_unhealthy_node_is_left_out(start_server: StartServer, tmp_path: Path, configured: bool) -> None:
    """With `signaling.health_file`, or where `turnkit probe` writes by default (<state_dir>/health.json)."""
    hosts = [{"address": "turn-a.example.test"}, {"address": "turn-b.example.test"}]
    settings: dict[str, object] = {"default_region": "eu"}
    if configured:
        settings["health_file"] = str(tmp_path / "health.json")
    async with start_server(
        signaling=settings,
        regions__eu={"provider": "static", "nodes": 2, "hosts": hosts},
    ) as srv:
        health_file = health.path_for(srv.cfg, {})
        assert (health_file == tmp_path / "health.json") is configured
        auth = {"Authorization": f"Bearer {make_token()}"}

        async def urls(**params: str) -> list[str]:
            doc = (await get(f"{srv.http}/api/ice-servers", params=params, headers=auth)).json()
            return [u for s in doc["iceServers"] for u in s["urls"]]

        async def hosts_are(want: set[str], **params: str) -> bool:  # the health file is looked at once a second
            return {u.split(":")[1] for u in await urls(**params)} == want

        both = {"turn-a.example.test", "turn-b.example.test"}
        assert await hosts_are(both)
        health.write_file(health_file, {"eu/turn-1": health.NodeHealth(False, int(time.time()), ("allocate",))})
        await eventually(lambda: hosts_are({"turn-b.example.test"}))
        assert await hosts_are({"127.0.0.1"}, region="local")
        health.write_file(health_file, {"eu/turn-1": health.NodeHealth(True, int(time.time()))})
        await eventually(lambda: hosts_are(both))


async def test_health_readiness_and_redis_outage(start_server: StartServer, redis_server: RedisProc) -> None:
    async with start_server(redis_server.url) as srv:
        assert (await get(f"{srv.http}/healthz")).json() == {"status": "ok"}
        r = await get(f"{srv.http}/readyz")
        assert (r.status_code, r.json()) == (200, {"status": "ready"})
        redis_server.stop()
        r = await get(f"{srv.http}/readyz", timeout=10)
        assert r.status_code == 503 and r.json()["reason"].startswith("redis unreachable")
        assert (await get(f"{srv.http}/healthz")).status_code == 200


async def test_metrics_in_prometheus_format(start_server: StartServer) -> None:
    async with start_server() as srv, srv.client("a") as a, srv.client("b") as b:
        aid = (await a.join("m"))["you"]
        await b.join("m")
        await b.send(type="offer", to=aid, sdp={"type": "offer", "sdp": ""})
        await a.expect("user-joined")
        await a.expect("offer")
        await b.ws.send("garbage")
        await b.expect("error")
        r = await get(f"{srv.http}/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(r.text)
            for s in fam.samples
        }
        p = "turnkit_signaling_"
        assert samples[(f"{p}connections", ())] == 2
        assert samples[(f"{p}rooms", ())] == 1
        assert samples[(f"{p}relayed_messages_total", (("type", "offer"),))] == 1
        assert samples[(f"{p}relayed_messages_total", (("type", "answer"),))] == 0
        assert samples[(f"{p}errors_total", (("code", "bad-json"),))] == 1
        assert samples[(f"{p}credentials_issued_total", ())] == 2
        assert samples[(f"{p}connections_accepted_total", ())] == 2


async def test_static_files_and_demo_page(start_server: StartServer, tmp_path: Path) -> None:
    static = tmp_path / "static"
    (static / "sub").mkdir(parents=True)
    (static / "index.html").write_text("<!doctype html><title>call</title>")
    (static / "app.js").write_text("console.log(1)")
    (static / "style.css").write_text("body{}")
    (static / "sub" / "x.svg").write_text("<svg/>")
    (tmp_path / "secret.txt").write_text("outside")
    async with start_server(server_kw={"static_dir": static}) as srv:
        r = await get(f"{srv.http}/")
        assert (r.status_code, r.text, r.headers["content-type"]) == (
            200,
            "<!doctype html><title>call</title>",
            "text/html; charset=utf-8",
        )
        expected = {
            "app.js": "text/javascript; charset=utf-8",
            "style.css": "text/css; charset=utf-8",
            "sub/x.svg": "image/svg+xml",
        }
        for name, ctype in expected.items():
            r = await get(f"{srv.http}/static/{name}")
            assert (r.status_code, r.headers["content-type"]) == (200, ctype)
        for bad in (
            "missing.js",
            "../secret.txt",
            "%2e%2e/secret.txt",
            ".hidden",
            "sub/../../secret.txt",
            "sub",
            "/etc/passwd",
        ):
            status, body = await raw_get(srv.port, f"/static/{bad}")
            assert (status, json.loads(body)) == (404, {"error": "not found"}), bad
        assert (await get(f"{srv.http}/nope")).status_code == 404


async def upgrade_status(url: str, origin: str | None) -> int:
    """101 when the upgrade with this `Origin` (None: no header) is accepted, else the refusal status."""
    headers = {"Origin": origin} if origin is not None else None
    try:
        async with connect(url, additional_headers=headers, origin=None) as ws:
            await ws.send('{"type": "ice-servers"}')
            assert json.loads(await ws.recv())["type"] == "ice-servers"
            return 101
    except InvalidStatus as exc:
        assert exc.response.headers["Content-Type"] == "application/json"
        assert json.loads(exc.response.body) == {"error": "origin not allowed"}
        return exc.response.status_code


async def test_origin_check_with_a_local_region(start_server: StartServer) -> None:
    """Defaults: https://<server_name>, plus the local region's own loopback pages; nothing else."""
    async with start_server(signaling={"server_name": "call.example.test"}) as srv:
        url, port = srv.ws_url(make_token()), srv.port
        cases = {
            None: 101,  # non-browser client: bearer token, no Origin
            "https://call.example.test": 101,
            "HTTPS://Call.Example.Test:443": 101,
            f"http://127.0.0.1:{port}": 101,
            f"http://localhost:{port}": 101,
            f"http://[::1]:{port}": 101,
            "https://evil.example": 403,
            "null": 403,
            "http://call.example.test": 403,
            "https://call.example.test.evil.example": 403,
            "https://call.example.test:8443": 403,
            f"http://127.0.0.1:{port + 1}": 403,
            f"https://127.0.0.1:{port}": 403,
            "": 403,
        }
        for origin, status in cases.items():
            assert await upgrade_status(url, origin) == status, origin
        async with httpx.AsyncClient(timeout=15) as client:
            two = [("Origin", "https://call.example.test"), ("Origin", "https://evil.example")]
            r = await client.get(f"{srv.http}/metrics", headers=two)  # only the upgrade checks Origin
            assert r.status_code == 200
        assert srv.server.stats.refused["origin"] == sum(1 for s in cases.values() if s == 403)


async def test_origin_check_for_a_deployed_region_and_explicit_list(start_server: StartServer) -> None:
    hosts = [{"address": "turn-a.example.test"}]
    deployed = {"regions__local": None, "regions__eu": {"provider": "static", "hosts": hosts}}
    async with start_server(**deployed) as srv:  # server_name defaults to the project domain
        url = srv.ws_url(make_token())
        assert await upgrade_status(url, "https://turn.example.test") == 101
        assert await upgrade_status(url, f"http://127.0.0.1:{srv.port}") == 403
        assert await upgrade_status(url, None) == 101
    listed = {"allowed_origins": ["https://app.example.test", "http://dev.example.test:8000"]}
    async with start_server(signaling=listed, **deployed) as srv:
        url = srv.ws_url(make_token())
        assert await upgrade_status(url, "https://app.example.test") == 101
        assert await upgrade_status(url, "http://dev.example.test:8000") == 101
        assert await upgrade_status(url, "https://turn.example.test") == 403
        assert await upgrade_status(url, "https://evil.example") == 403


@pytest.mark.parametrize("value", ["https://x.test/", "ftp://x.test", "https://x.test/path", "null", "x.test"])
async def test_allowed_origins_must_be_origins(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="allowed_origins"):
        write_config(tmp_path, signaling={"allowed_origins": [value]})


def replace_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Swap in new content as `turnkit secret` does (a new inode, so the server notices)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    tmp.replace(path)


MALFORMED_KEYRINGS: dict[str, tuple[bytes, int]] = {
    "not UTF-8": (b'{"secrets": "\xff\xfe"}', 0o600),
    "nested too deep": (b"[" * 100_000, 0o600),
    "two truthy primaries": (
        b'{"secrets": [{"id": "a", "value": "x", "created_at": 1, "primary": "yes"},'
        b' {"id": "b", "value": "y", "created_at": 1, "primary": "yes"}]}',
        0o600,
    ),
    "primary not a string": (b'{"secrets": [{"id": "a", "value": 5, "created_at": 1, "primary": true}]}', 0o600),
    "not JSON": (b"secrets = 1", 0o600),
    "readable by others": (b"{}", 0o644),
}


async def test_readyz_is_generic_and_survives_a_malformed_keyring(start_server: StartServer, tmp_path: Path) -> None:
    secrets_file = tmp_path / "private" / "ring.json"
    secrets_file.parent.mkdir()
    keyring.save(secrets_file, keyring.init(int(time.time())))
    good = secrets_file.read_bytes()
    async with start_server(env={"TURNKIT_SECRETS_FILE": str(secrets_file)}) as srv:
        auth = {"Authorization": f"Bearer {make_token('erin')}"}
        assert (await get(f"{srv.http}/readyz")).json() == {"status": "ready"}
        for name, (data, mode) in MALFORMED_KEYRINGS.items():
            replace_file(secrets_file, data, mode)
            r = await get(f"{srv.http}/readyz")
            assert (r.status_code, r.json()) == (503, {"status": "not ready", "reason": "secret keyring unusable"}), (
                name
            )
            # the last good keyring keeps issuing
            assert (await get(f"{srv.http}/api/turn", headers=auth)).status_code == 200, name
        secrets_file.unlink()
        r = await get(f"{srv.http}/readyz")
        assert (r.status_code, r.json()) == (503, {"status": "not ready", "reason": "no secret keyring"})
        assert str(tmp_path) not in r.text
        replace_file(secrets_file, good)
        assert (await get(f"{srv.http}/readyz")).json() == {"status": "ready"}


@pytest.mark.parametrize(("leeway", "accepted"), [(None, {-10, 10}), (0, set()), (120, {-10, 10, -60, 60})])
async def test_jwt_leeway_is_a_setting(start_server: StartServer, leeway: int | None, accepted: set[int]) -> None:
    """`signaling.jwt.leeway` (default 30 s): how far past `exp` / before `nbf` a token still counts."""
    settings = {"jwt": {"leeway": leeway}} if leeway is not None else {}
    async with start_server(signaling=settings) as srv:
        now = int(time.time())
        for skew in (-10, 10, -60, 60):
            # negative: expired `skew` seconds ago; positive: valid only `skew` seconds from now
            claims = {"exp": now + skew} if skew < 0 else {"exp": now + 600, "nbf": now + skew}
            token = jwt.encode({"sub": "lee", **claims}, JWT_SECRET, algorithm="HS256")
            r = await get(f"{srv.http}/api/ice-servers", headers={"Authorization": f"Bearer {token}"})
            expected = (
                (200, None) if skew in accepted else (401, "token expired" if skew < 0 else "token not yet valid")
            )
            assert (r.status_code, r.json().get("error")) == expected, skew


async def test_jwt_leeway_is_bounded(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="leeway"):
        write_config(tmp_path, signaling={"jwt": {"leeway": 301}})


async def test_odd_requests_are_answered_never_logged_as_tracebacks(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with start_server() as srv:
        status, body = await raw_get(srv.port, "//[x/")
        assert (status, json.loads(body)) == (400, {"error": "bad request target"})
        two = [("Authorization", f"Bearer {make_token()}"), ("Authorization", "Bearer other")]
        async with httpx.AsyncClient(timeout=15) as client:
            r = await client.get(f"{srv.http}/api/ice-servers", headers=two)
        assert (r.status_code, r.json()) == (401, {"error": "more than one Authorization header"})
        with pytest.raises(InvalidStatus) as info:
            async with connect(srv.ws_url(), additional_headers=two):
                pass
        assert info.value.response.status_code == 401
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]

"""Rolling signaling restart on the local region (issue 12 item 3, the deploy part).

Two real signaling instances sharing rooms through a real redis-server: a config change restarts
them one at a time, the second only after the first answers /readyz, so at every moment of the
deploy at least one instance is ready.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from pathlib import Path

from tests.helpers.deploy import consecutive_free_ports, local_site
from tests.helpers.signaling import redis_running
from turnkit import localstack


def ready(port: int) -> bool:
    """The instance answers /readyz with 200. A stopped one refuses at once; a ready one on a loaded 2-core
    machine may take seconds to answer, which is slow, not down (a short timeout would count it down)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=15) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def test_signaling_instances_restart_one_at_a_time_each_ready_before_the_next(tmp_path: Path) -> None:
    root = tmp_path / "site"
    root.mkdir()
    with redis_running(tmp_path / "redis") as redis, local_site(root) as site:
        port = consecutive_free_ports(2)
        text = site.config.read_text().replace(
            f"port = {site.signaling}\ninstances = 1", f'port = {port}\ninstances = 2\nredis_url = "{redis.url}"'
        )
        site.config.write_text(text)
        first = site.cli("deploy", "--region", "local")
        assert first.returncode == 0, first.stderr
        cfg = site.load()
        names = ("signaling", f"signaling-{port + 1}")
        before = localstack.status(cfg, "local")
        assert all(before[n] for n in names)
        assert ready(port) and ready(port + 1)

        samples: list[tuple[bool, bool]] = []
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                samples.append((ready(port), ready(port + 1)))
                done.wait(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            site.config.write_text(text.replace("instances = 2", "instances = 2\nrate_limit = 40.0"))
            out = site.cli("deploy", "--region", "local")
        finally:
            done.set()
            watcher.join()
        assert out.returncode == 0, out.stderr
        after = localstack.status(cfg, "local")
        assert all(after[n] != before[n] for n in names)  # both restarted …
        err = out.stderr
        assert (  # … one at a time, each ready before the next one stops
            err.index("stopped signaling (pid")
            < err.index("signaling is ready")
            < err.index(f"stopped signaling-{port + 1} (pid")
            < err.index(f"signaling-{port + 1} is ready")
        )
        assert samples and all(a or b for a, b in samples), samples  # never both down
        assert any(not a for a, _ in samples) or any(not b for _, b in samples)  # the watcher saw a restart

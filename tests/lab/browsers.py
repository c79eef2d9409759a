"""Headless Chromium (the Debian package, /usr/bin/chromium) inside a home namespace behind NAT.

Playwright starts the browser through a two-line wrapper that enters the namespace and execs
/usr/bin/chromium; the browser trusts pebble's root through its own NSS database and resolves
the lab's names with host-resolver rules only (no DNS query leaves the lab).
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

from tests.helpers.browser import CHROMIUM

#: Both sides connected, the selected pair known, and remote video actually decoded and shown.
CALL_UP = """() => {
  const d = window.turnkitDemo, v = document.getElementById("remote-video");
  return d.state === "connected" && d.stats !== null && d.stats.localCandidateType !== null
    && d.stats.framesDecoded > 0 && v.videoWidth > 0;
}"""

#: Keep only stun: URLs in every RTCPeerConnection the page makes (the "no TURN" baseline).
STUN_ONLY = """(() => {
  const Native = window.RTCPeerConnection;
  const stunOnly = (config) => ({
    ...config,
    iceServers: ((config && config.iceServers) || [])
      .map((s) => ({ urls: [].concat(s.urls).filter((u) => u.startsWith("stun:")) }))
      .filter((s) => s.urls.length > 0),
  });
  // Also on ICE restarts: the page's watchdog hands fresh servers to setConfiguration().
  const nativeSet = Native.prototype.setConfiguration;
  Native.prototype.setConfiguration = function (config) { return nativeSet.call(this, stunOnly(config)); };
  window.RTCPeerConnection = function (config, ...rest) { return new Native(stunOnly(config), ...rest); };
  window.RTCPeerConnection.prototype = Native.prototype;
})();"""


def prepare_profile(home: Path, namespace: str, ca: Path) -> Path:
    """A HOME with an NSS database trusting `ca`, and the wrapper Playwright launches; returns it."""
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True, exist_ok=True)
    if not (nssdb / "cert9.db").exists():  # -N on an existing database would prompt for its password
        subprocess.run(
            ["certutil", "-N", "-d", f"sql:{nssdb}", "--empty-password"],
            check=True, capture_output=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    subprocess.run(
        ["certutil", "-A", "-d", f"sql:{nssdb}", "-n", "turnkit-lab-acme", "-t", "C,,", "-i", str(ca)],
        check=True, capture_output=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    wrapper = home / "chromium-in-netns"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {namespace} env HOME={home} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def resolver_rules(names: Mapping[str, str]) -> str:
    """Chromium's host-resolver rules: the lab's names to their addresses, everything else NOTFOUND."""
    return ",".join([*(f"MAP {name} {ip}" for name, ip in names.items()), "MAP * ~NOTFOUND"])

"""The fleet lab: Debian hosts as systemd-nspawn containers on a bridge in 198.18.0.0/15.

`image` builds and caches the debootstrap base, `network` owns the bridge, namespaces, veths and
the guard route, `host` prepares an overlay root and boots it, `lab` joins them into up/down,
`apt` serves packages on the bridge. Everything here needs root and Linux; nothing leaves
198.18.0.0/15 (the host keeps ip_forward at 0 and an unreachable route for the whole range).
"""

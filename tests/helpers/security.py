"""Security test helpers: odd-looking but valid values for every templated field."""

from __future__ import annotations

#: Odd-looking but valid values in every field that reaches a template.
ODD = """
[project]
domain = "x-1.a-b.example.test"
realm = "r3alm-9.example.test"
[coturn]
cert_dir = "/srv/turn+kit/certs=a,b:c@d-e_f.g"
[signaling]
host = "::1"
server_name = "call-1.x-1.a-b.example.test"
[tls]
acme_server = "https://[2001:db8::1]:14000/dir/a+b,c=d:e@f~g%41"
email = "o.p+s_1-2@x-1.a-b.example.test"
webroot = "/var/www/acme=a,b:c@d+e-f_g.h"
live_dir = "/etc/lets+encrypt/live=1"
[ports]
tls_443 = true
[regions.us]
provider = "static"
nodes = 2
[[regions.us.hosts]]
address = "turn-1.us.x-1.a-b.example.test"
public_ip = "198.51.100.7"
private_ip = "10.0.0.7"
[[regions.us.hosts]]
address = "2001:db8::8"
hostname = "t-2.example.test"
"""

"""Precise types for turnkit.toml values that reach rendered files, shell scripts or argv.

Config files travel through CI variables, pull requests and templates, so every string that
ends up in a coturn, NGINX, certbot or shell file is checked against an allow-list at load time
(a newline in `project.realm` would otherwise add coturn directives). Each type is a plain `str`
at runtime (IP addresses and networks in canonical form), so callers need not change; the
templates escape again on output (`turnkit.render` filters) as defence in depth.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from typing import Annotated

from pydantic import AfterValidator

#: RFC 1123 §2.1 host name: dot-separated labels of letters, digits and inner dashes, 1-63 each.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
DNS_NAME_MAX = 253

#: Absolute paths: letters, digits and `._+@,:=-` between slashes; no whitespace, quotes,
#: `;`, `$`, backticks, `%`, braces or `#`, so a path is one token in every file format we write.
_PATH = re.compile(r"/[A-Za-z0-9._+@,:=/-]*")
PATH_MAX = 4095

#: E-mail for the ACME account: a dot-atom local part without the shell/INI-special atext.
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9._+-]{1,64}")
EMAIL_MAX = 254

#: https URLs: RFC 3986 characters minus query, fragment and the sub-delims a config file or shell
#: would read specially (`;`, `$`, quotes, parentheses, `&`, `*`, `!`).
_URL = re.compile(r"https://[A-Za-z0-9._~:/\[\]@%+,=-]+")
_URL_PATH = re.compile(r"[A-Za-z0-9._~/%+,=:@-]*")
URL_MAX = 2048


def dns_name(value: str) -> str:
    if len(value) > DNS_NAME_MAX or not _DNS_NAME.fullmatch(value):
        raise ValueError("must be a DNS name (RFC 1123 labels)")
    return value


def ip_address(value: str) -> str:
    """An IPv4 or IPv6 address in canonical form; IPv6 zone ids (`%eth0`) are refused."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise ValueError("must be an IP address") from None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        raise ValueError("must be an IP address without a zone id")
    return str(address)


def ip_network(value: str) -> str:
    """An IPv4 or IPv6 network (`addr/len`; host bits are cleared) in canonical form."""
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError("must be an IP network (address/prefix length)") from None
    if "%" in value:
        raise ValueError("must be an IP network without a zone id")
    return str(network)


def host_address(value: str) -> str:
    """A DNS name or an IP address (node addresses, the signaling bind address)."""
    try:
        return ip_address(value)
    except ValueError:
        pass
    try:
        return dns_name(value)
    except ValueError:
        raise ValueError("must be a DNS name or an IP address") from None


def absolute_path(value: str) -> str:
    if len(value) > PATH_MAX or not _PATH.fullmatch(value):
        raise ValueError("must be an absolute path of letters, digits and ._+@,:=-")
    if ".." in value.split("/"):
        raise ValueError("must be an absolute path without `..`")
    return value


_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")


def env_name(value: str) -> str:
    """An environment variable's name, as written in env files and systemd's EnvironmentFile=."""
    if not _ENV_NAME.fullmatch(value):
        raise ValueError("must be an environment variable name of A-Z, 0-9 and _ (not starting with a digit)")
    return value


def email(value: str) -> str:
    local, at, domain = value.rpartition("@")
    if len(value) > EMAIL_MAX or not at or not _EMAIL_LOCAL.fullmatch(local) or not _DNS_NAME.fullmatch(domain):
        raise ValueError("must be an e-mail address (letters, digits, ._+- @ a DNS name)")
    return value


def https_url(value: str) -> str:
    """An https URL with a DNS or IP host, an optional port and path; no credentials, query or fragment."""
    message = "must be an https URL without user, query or fragment"
    if len(value) > URL_MAX or not _URL.fullmatch(value):
        raise ValueError(message)
    parts = urllib.parse.urlsplit(value)
    try:
        port = parts.port
        hostname = parts.hostname or ""
        host_address(hostname)
    except ValueError:
        raise ValueError(message) from None
    if parts.username is not None or port == 0 or not _URL_PATH.fullmatch(parts.path) or ".." in parts.path.split("/"):
        raise ValueError(message)
    return value


DnsName = Annotated[str, AfterValidator(dns_name)]
IpAddress = Annotated[str, AfterValidator(ip_address)]
IpNetwork = Annotated[str, AfterValidator(ip_network)]
HostAddress = Annotated[str, AfterValidator(host_address)]
AbsolutePath = Annotated[str, AfterValidator(absolute_path)]
Email = Annotated[str, AfterValidator(email)]
EnvName = Annotated[str, AfterValidator(env_name)]
HttpsUrl = Annotated[str, AfterValidator(https_url)]

"""turnkit.toml: the one declarative description of a deployment, loaded and validated once."""

from __future__ import annotations

import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from turnkit.errors import ConfigError
from turnkit.types import AbsolutePath, DnsName, Email, EnvName, HostAddress, HttpsUrl, IpAddress, IpNetwork

DEFAULT_CONFIG_NAME = "turnkit.toml"

#: Default cloud region per turnkit region name (overridable with `cloud_region`).
CLOUD_REGIONS: dict[str, str] = {
    "eu": "eu-central-1",
    "us": "us-east-1",
    "asia": "ap-southeast-1",
}

MIN_TTL = 60
MAX_TTL = 48 * 3600

_NAME = r"^[a-z][a-z0-9-]{0,31}$"
_CLOUD_REGION = r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$"
_INSTANCE_TYPE = r"^[a-z0-9-]{1,32}\.[a-z0-9]{1,32}$"
#: POSIX portable user name (it reaches ssh's argv and the Ansible inventory).
_USER = r"^[a-z_][a-z0-9_-]{0,31}$"

VERSION_PATTERN = r"^\d+\.\d+(\.\d+)?$"

Port = Annotated[int, Field(ge=1, le=65535)]
Ttl = Annotated[int, Field(ge=MIN_TTL, le=MAX_TTL)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Project(_Model):
    """Who and where: names, credential lifetimes, where secrets and state live."""

    name: Annotated[str, Field(pattern=_NAME)] = "turnkit"
    domain: DnsName = "example.test"
    realm: DnsName | None = None
    ttl: Ttl = 3600
    max_ttl: Ttl = MAX_TTL
    secrets_file: str = "turnkit.secrets.json"
    state_dir: str = ".turnkit"

    @model_validator(mode="after")
    def _ttl_within_max(self) -> Project:
        if self.ttl > self.max_ttl:
            raise ValueError(f"ttl: must be ≤ max_ttl ({self.max_ttl}), got {self.ttl}")
        return self

    @property
    def effective_realm(self) -> str:
        return self.realm or self.domain


class Ports(_Model):
    """TURN listening ports (RFC 8656 §3.1 defaults) and the relay port range."""

    listening: Port = 3478
    tls: Port = 5349
    tls_443: bool = False
    relay_min: Annotated[int, Field(ge=1024, le=65535)] = 49152
    relay_max: Annotated[int, Field(ge=1024, le=65535)] = 65535

    @model_validator(mode="after")
    def _range(self) -> Ports:
        if self.relay_min > self.relay_max:
            raise ValueError(f"relay_min: must be ≤ relay_max ({self.relay_max}), got {self.relay_min}")
        return self


class Coturn(_Model):
    """coturn knobs that differ between deployments; the hardening itself is not optional."""

    version: Annotated[str, Field(pattern=VERSION_PATTERN)] | None = None
    user_quota: Annotated[int, Field(ge=0)] = 12
    total_quota: Annotated[int, Field(ge=0)] = 1200
    stale_nonce: Annotated[int, Field(ge=0)] = 600
    tcp_relay: bool = False
    cert_dir: AbsolutePath = "/etc/turnkit/certs"
    max_bps: Annotated[int, Field(ge=0)] = 0
    #: How long a deploy waits for a node's live allocations to end before a coturn restart.
    drain_timeout: Annotated[float, Field(ge=0, le=86400)] = 300.0


class Jwt(_Model):
    """How the signaling service authenticates clients (HS256 secret or RS/ES public key)."""

    algorithms: list[Literal["HS256", "RS256", "ES256"]] = ["HS256"]
    secret_env: EnvName = "TURNKIT_JWT_SECRET"
    public_key_file: str | None = None
    jwks_file: str | None = None
    audience: str | None = None
    issuer: str | None = None
    leeway: Annotated[int, Field(ge=0, le=300)] = 30


#: A serialised web origin (RFC 6454 §6.2): http(s)://host[:port], nothing after it.
_ORIGIN = r"^https?://([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$"


class Signaling(_Model):
    """The bundled signaling service: where it listens and how it protects itself."""

    host: HostAddress = "127.0.0.1"
    port: Port = 8080
    instances: Annotated[int, Field(ge=1, le=64)] = 2
    server_name: DnsName | None = None
    room_capacity: Annotated[int, Field(ge=2, le=16)] = 2
    max_frame_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 64 * 1024
    rate_limit: Annotated[float, Field(gt=0)] = 50.0
    rate_burst: Annotated[int, Field(ge=1)] = 100
    send_queue: Annotated[int, Field(ge=1)] = 256
    redis_url: str | None = None
    default_region: str | None = None
    health_file: str | None = None
    refresh_margin: Annotated[int, Field(ge=10)] = 300
    max_connections_per_user: Annotated[int, Field(ge=1, le=10_000)] = 20
    #: Seconds a dropped connection keeps its peer id and room for `?resume=` (0: leave at once).
    resume_window: Annotated[int, Field(ge=0, le=3600)] = 30
    #: Origins whose pages may open /ws (default: https://<server_name>; a local region adds loopback).
    allowed_origins: list[Annotated[str, Field(pattern=_ORIGIN)]] | None = None
    jwt: Jwt = Jwt()


class Tls(_Model):
    """Let's Encrypt (or any ACME CA) settings for certbot."""

    acme_server: HttpsUrl = "https://acme-v02.api.letsencrypt.org/directory"
    email: Email | None = None
    webroot: AbsolutePath = "/var/www/turnkit-acme"
    live_dir: AbsolutePath = "/etc/letsencrypt/live"


class Host(_Model):
    """A node address: static hosts list them; cloud nodes get them from provisioning."""

    name: Annotated[str, Field(pattern=_NAME)] | None = None
    address: HostAddress
    public_ip: IpAddress | None = None
    private_ip: IpAddress | None = None
    hostname: DnsName | None = None


class Region(_Model):
    """One region of TURN nodes and the provider that creates them."""

    provider: Literal["aws", "static", "local", "lab"]
    cloud_region: Annotated[str, Field(pattern=_CLOUD_REGION)] | None = None
    nodes: Annotated[int, Field(ge=1, le=100)] = 1
    instance_type: Annotated[str, Field(pattern=_INSTANCE_TYPE)] = "t3.small"
    hosts: list[Host] = []
    ssh_cidr: IpNetwork | None = None
    ssh_user: Annotated[str, Field(pattern=_USER)] = "admin"
    ssh_public_key: str = "~/.ssh/id_ed25519.pub"
    route53_zone: DnsName | None = None
    allow_loopback_peers: bool = False
    allow_lab_peers: bool = False

    @field_validator("ssh_cidr")
    @classmethod
    def _cidr(cls, value: str | None) -> str | None:
        if value is not None:
            net = ipaddress.ip_network(value, strict=False)
            if net.prefixlen == 0:
                raise ValueError("must not open SSH to the whole internet")
        return value

    @model_validator(mode="after")
    def _hosts_match(self) -> Region:
        if self.allow_loopback_peers and self.provider != "local":
            raise ValueError("allow_loopback_peers: only a `local` region may relay to loopback, got true")
        if self.allow_lab_peers and self.provider != "lab":
            raise ValueError("allow_lab_peers: only a `lab` region may relay to its lab hosts, got true")
        if self.provider == "static" and len(self.hosts) != self.nodes:
            raise ValueError(f"hosts: static region needs {self.nodes} host(s), got {len(self.hosts)}")
        return self


class Config(_Model):
    """The whole turnkit.toml; `path` is where it was read from (relative paths resolve there)."""

    project: Project = Project()
    ports: Ports = Ports()
    coturn: Coturn = Coturn()
    signaling: Signaling = Signaling()
    tls: Tls = Tls()
    regions: dict[Annotated[str, Field(pattern=_NAME)], Region] = {}
    cost: Cost = Field(default_factory=lambda: Cost())
    quotas: Quotas = Field(default_factory=lambda: Quotas())
    meter: Meter = Field(default_factory=lambda: Meter())
    path: Path = Field(default=Path(DEFAULT_CONFIG_NAME), exclude=True)

    def region(self, name: str) -> Region:
        try:
            return self.regions[name]
        except KeyError:
            known = ", ".join(sorted(self.regions)) or "none"
            raise ConfigError(f"{self.path.name}: regions.{_key(name)}: no such region (known: {known})") from None

    def resolve(self, relative: str) -> Path:
        """A path from the config, relative to the config file's directory."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else self.path.parent / p

    @property
    def secrets_path(self) -> Path:
        return self.resolve(self.project.secrets_file)

    @property
    def state_path(self) -> Path:
        return self.resolve(self.project.state_dir)

    def cloud_region(self, name: str) -> str:
        region = self.region(name)
        if region.cloud_region:
            return region.cloud_region
        if name in CLOUD_REGIONS:
            return CLOUD_REGIONS[name]
        raise ConfigError(f"{self.path.name}: regions.{name}.cloud_region: required for region `{name}`")


#: How each pydantic error type reads to a user: (type → template using the error's ctx).
_MESSAGES: dict[str, str] = {
    "greater_than_equal": "must be ≥ {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be ≤ {le}",
    "less_than": "must be < {lt}",
    "missing": "is required",
    "extra_forbidden": "unknown key",
    "literal_error": "must be one of {expected}",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "string_pattern_mismatch": "must match {pattern}",
    "list_type": "must be a list",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
}


#: Longest value repr an error line shows (a hostile value may be kilobytes of anything).
SHOWN_MAX = 60
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+|\[key\]")


def shown(value: Any) -> str:
    """`repr(value)`, cut to SHOWN_MAX characters: one line whatever the value holds."""
    text = repr(value)
    return text if len(text) <= SHOWN_MAX else f"{text[: SHOWN_MAX - 1]}…"


def _key(part: Any) -> str:
    """A TOML key as written, or its truncated repr when it holds anything but [A-Za-z0-9_-]."""
    text = str(part)
    return text if _PLAIN_KEY.fullmatch(text) else shown(text)


def _describe(error: Any) -> str:
    """One pydantic error as `key.path: reason, got value`."""
    parts = [_key(part) for part in error["loc"] if part != "__root__"]
    is_key = parts[-1:] == ["[key]"]
    loc = ".".join(parts[:-1] if is_key else parts)
    kind = error["type"]
    if kind in _MESSAGES:
        reason = ("name " if is_key else "") + _MESSAGES[kind].format(**error.get("ctx", {}))
    else:
        reason = str(error["msg"]).removeprefix("Value error, ")
        if ": " in reason and reason.split(": ", 1)[0].isidentifier():
            sub, reason = reason.split(": ", 1)
            loc = f"{loc}.{sub}" if loc else sub
            return f"{loc}: {reason}"
    if kind in ("missing", "extra_forbidden"):
        return f"{loc}: {reason}"
    return f"{loc}: {reason}, got {shown(error['input'])}"


def parse(data: dict[str, Any], path: Path = Path(DEFAULT_CONFIG_NAME)) -> Config:
    """Validate a parsed TOML document; the first error becomes one ConfigError line."""
    try:
        return Config.model_validate({**data, "path": path})
    except ValidationError as exc:
        raise ConfigError(f"{path.name}: {_describe(exc.errors()[0])}") from None


def load(path: Path | str | None = None) -> Config:
    """Read and validate turnkit.toml (default: ./turnkit.toml)."""
    p = Path(path) if path is not None else Path(DEFAULT_CONFIG_NAME)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: not found (create one with `turnkit init`)") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p.name}: invalid TOML: {exc}") from None
    return parse(data, p.resolve())


# -- metering (issue 14): new sections, kept at the end of the file -------------------------------

#: Egress $/GB defaults per provider (what the provider bills: traffic leaving the node).
#: aws: EC2 data transfer out to the internet, first 10 TB/month tier (aws.amazon.com/ec2/pricing/on-demand,
#: $0.09/GB in us-east-1 and eu-central-1); static/local: 0 (flat-rate or no bill).
DEFAULT_EGRESS_PER_GB: dict[str, float] = {"aws": 0.09, "static": 0.0, "local": 0.0}

Money = Annotated[float, Field(ge=0)]


class Cost(_Model):
    """`[cost]`: $/GB of billed egress per region; unset regions use their provider's default."""

    per_gb: dict[str, Money] = {}
    currency: str = "USD"


class Quotas(_Model):
    """`[quotas]`: a user's monthly relayed GB and each region's monthly budget (0 = no limit)."""

    user_monthly_gb: Annotated[float, Field(ge=0)] = 0.0
    region_monthly_budget: dict[str, Money] = {}
    fallback_region: str | None = None


class Meter(_Model):
    """`[meter]`: the on-node meter and the central store it ships usage to."""

    statsdb_port: Port = 6390
    statsdb_dbname: Annotated[int, Field(ge=0, le=15)] = 0
    #: TLS port of the central usage store on the signaling host.
    central_port: Port = 6380
    central_url_env: EnvName = "TURNKIT_METER_CENTRAL_URL"
    buffer: str = "/var/lib/turnkit-meter/buffer.sqlite"
    flush_interval: Annotated[float, Field(gt=0, le=3600)] = 10.0
    metrics_port: Port = 9641
    node_bps_capacity: Annotated[int, Field(ge=0)] = 0

"""Every line of every rendered file comes from its template: no value adds a line or a directive."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jinja2
import pytest

from tests.helpers.security import ODD
from turnkit import config, filters, nodes, render, resources
from turnkit.errors import RenderError

#: What a `{{ … }}` may expand to, by how the template escapes it (no newline in any of them).
_CONF = r"[^\s;{}#\"'`$\\]*"
_PLACEHOLDERS: tuple[tuple[str, str], ...] = (
    ("turnkit_header", re.escape(render.HEADER)),
    ("| length", r"[0-9]+"),
    ("| join(' ')", rf"{_CONF}(?: {_CONF})*"),
    ("| conf_value", _CONF),
    ("| quote", r"(?:[\w@%+=:,./-]+|'[^']*')+"),
)
_ANY_LINE = r"[^\n]*"  # systemd values and the hook's reload commands (set by turnkit, not by config)
_BLOCKS = {"if": "(?:", "elif": "|", "else": "|", "endif": ")?", "for": "(?:", "endfor": ")*"}
_TOKEN = re.compile(
    r"(?:^[ \t]*)?\{%-?\s*(?P<kw>\w+).*?%\}\n?|\{\{\s*(?P<expr>.*?)\s*\}\}|\{#.*?#\}\n?", re.MULTILINE | re.DOTALL
)


def placeholder(expr: str) -> str:
    return next((pattern for marker, pattern in _PLACEHOLDERS if marker in expr), _ANY_LINE)


def template_pattern(source: str) -> re.Pattern[str]:
    """A regex of everything a template can render (trim_blocks + lstrip_blocks, as turnkit and Ansible use)."""
    out, pos = [], 0
    for match in _TOKEN.finditer(source):
        out.append(re.escape(source[pos : match.start()]))
        if match["kw"]:
            out.append(_BLOCKS[match["kw"]])
        elif match["expr"] is not None:
            out.append(placeholder(match["expr"]))
        pos = match.end()
    out.append(re.escape(source[pos:]))
    return re.compile("".join(out))


def templates() -> dict[str, str]:
    """Rendered file (without the node prefix) → its template."""
    out = {t.dest: t.template for t in render.REGION_TARGETS}
    out.update({dest: tpl for tpl, dest, _ in render.NODE_TARGETS})
    return out


def odd_files(tmp_path: Path, env: jinja2.Environment | None = None, **overrides: Any) -> dict[str, render.Rendered]:
    path = tmp_path / "turnkit.toml"
    path.write_text(ODD)
    cfg = config.load(path)
    nodes_ = nodes.region_nodes(cfg, "us")
    if env is None:
        return render.render_region(cfg, nodes_, ["s1-Ab_9", "s2"], "4.6.1", resources.template_dir(), overrides)
    context = {**render.nginx_context(cfg, nodes_), **overrides}
    return {
        "signaling/nginx/nginx.conf": render.Rendered(render.render_template(env, "nginx/nginx.conf.j2", context), 0)
    }


def template_of(rel: str) -> str:
    by_dest = templates()
    return by_dest.get(rel) or by_dest[rel.split("/", 1)[1]]


def test_every_rendered_file_matches_its_template_line_for_line(tmp_path: Path) -> None:
    files = odd_files(tmp_path)
    assert len(files) == len(render.REGION_TARGETS) + 2 * len(render.NODE_TARGETS)
    for rel, item in files.items():
        source = (resources.template_dir() / template_of(rel)).read_text()
        assert template_pattern(source).fullmatch(item.content), f"{rel} has a line its template does not make"
    conf = files["turn-1/turnserver.conf"].content
    assert "realm=r3alm-9.example.test\n" in conf
    assert "server call-1" not in files["signaling/nginx/nginx.conf"].content


def test_structure_check_catches_an_injected_directive(tmp_path: Path) -> None:
    """The check above can fail: with the escaping filter switched off, an injected block is caught."""
    env = render.environment(resources.template_dir())
    env.filters["conf_value"] = str
    hostile = "/srv/acme;\n        }\n        location /x { return 200 pwned;"
    files = odd_files(tmp_path, env, nginx_acme_webroot=hostile)
    source = (resources.template_dir() / "nginx/nginx.conf.j2").read_text()
    assert "location /x { return 200 pwned;" in files["signaling/nginx/nginx.conf"].content
    assert template_pattern(source).fullmatch(files["signaling/nginx/nginx.conf"].content) is None


_FILTERED = re.compile(r"\{\{\s*(.*?)\s*\}\}")
#: Interpolations left unfiltered on purpose: the header, a count, and turnkit's own reload commands.
_UNFILTERED_OK = {"turnkit_header", "nginx_upstream_servers | length", "certbot_coturn_reload_command",
                  "certbot_nginx_reload_command", "certbot_usage_store_reload_command"}  # fmt: skip


@pytest.mark.parametrize(
    ("template", "escape"),
    [("nginx/nginx.conf.j2", "conf_value"), ("coturn/turnserver.conf.j2", "conf_value"),
     ("certbot/cli.ini.j2", "conf_value"), ("certbot/deploy-hook.sh.j2", "quote|conf_value")],
)  # fmt: skip
def test_every_value_in_nginx_coturn_certbot_and_hook_is_escaped(template: str, escape: str) -> None:
    source = (resources.template_dir() / template).read_text()
    exprs = [e for e in _FILTERED.findall(source) if e not in _UNFILTERED_OK]
    assert exprs
    lines = [line for line in source.splitlines() if "{{" in line and not line.lstrip().startswith("#")]
    unescaped = [e for e in exprs if not re.search(rf"\|\s*(?:{escape})\s*$|map\('(?:{escape})'\)", e)]
    assert unescaped == [], f"{template}: {unescaped} (lines: {lines})"


#: A value that reaches a file without going through turnkit.toml (an Ansible var, a tampered
#: state file, a keyring) still cannot add a line: (template, context key, hostile value).
BYPASS = [
    ("coturn/turnserver.conf.j2", "coturn_realm", "example.test\nallow-loopback-peers"),
    ("coturn/turnserver.conf.j2", "coturn_cert_file", "/c.pem\nallowed-peer-ip=169.254.169.254"),
    ("coturn/turnserver.conf.j2", "coturn_userdb", "/var/lib/TOPSECRET\nallow-loopback-peers"),
    ("coturn/turnserver.conf.j2", "coturn_statsdb_password", "pw port=1 ip=10.0.0.1\nallow-loopback-peers"),
    ("coturn/turnserver.conf.j2", "coturn_external_ip", "198.51.100.7 #"),
    ("nginx/nginx.conf.j2", "nginx_server_names", ["ok.example.test", "x;}server{"]),
    ("nginx/nginx.conf.j2", "nginx_acme_webroot", "/srv/$host"),
    ("nginx/nginx.conf.j2", "nginx_turn_server_names", ["default;"]),
    ("certbot/cli.ini.j2", "certbot_email", "ops@example.test\nserver = https://evil.example.test/"),
    ("certbot/cli.ini.j2", "certbot_webroot", '/srv/"acme"'),
]


@pytest.mark.parametrize(("template", "key", "value"), BYPASS)
def test_filter_refuses_values_that_bypassed_the_config(tmp_path: Path, template: str, key: str, value: Any) -> None:
    path = tmp_path / "turnkit.toml"
    path.write_text(ODD)
    cfg = config.load(path)
    nodes_ = nodes.region_nodes(cfg, "us")
    context = {
        **render.coturn_context(cfg, nodes_[0], ["s"], "4.6.1"),
        **render.nginx_context(cfg, nodes_),
        **render.certbot_context(cfg, nodes_),
        key: value,
    }
    env = render.environment(resources.template_dir())
    with pytest.raises(RenderError) as exc:
        render.render_template(env, template, context)
    assert str(exc.value).startswith(f"template `{template}`: a value contains ")
    assert str(exc.value).endswith(", which could end a directive or a line")
    assert "TOPSECRET" not in str(exc.value) and "\n" not in str(exc.value)


def test_quote_filter_makes_one_shell_word() -> None:
    assert filters.shell_quote("/srv/a b;$(id)`x`'q'") == "'/srv/a b;$(id)`x`'\"'\"'q'\"'\"''"
    assert filters.shell_quote("/etc/turnkit/certs") == "/etc/turnkit/certs"

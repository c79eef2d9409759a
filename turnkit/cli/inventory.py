"""`turnkit inventory`: the Ansible inventory `turnkit deploy` uses, written out for running site.yml by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from turnkit import ansible, keyring, nodes
from turnkit.cli import output
from turnkit.cli.common import CONFIG_OPTION, load_config
from turnkit.coturn import target_version
from turnkit.fsutil import atomic_write
from turnkit.provision import provider_for


def inventory(
    region: str = typer.Option(..., "--region", "-r", help="Region from turnkit.toml."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory to write into (files are 0600)."),
    with_secrets: bool = typer.Option(
        False, "--with-secrets", help="Also write secrets.json (TURN secrets, keyring) for ansible-playbook."
    ),
    config: Path = CONFIG_OPTION,
) -> None:
    """Write turn.yml (TURN nodes), signaling.yml (the signaling host) and vars.json for ansible-playbook.

    Example: turnkit inventory --region eu --out ansible/ --with-secrets
    """
    cfg = load_config(config)
    spec = cfg.region(region)
    node_list = nodes.region_nodes(cfg, region)
    key = Path(spec.ssh_public_key.removesuffix(".pub")).expanduser()
    provider = provider_for(cfg, region)
    options = provider.fleet_options()

    def build(turn: tuple[str, ...] | None, signaling: tuple[ansible.Host, ...] | None) -> dict[str, Any]:
        return ansible.region_inventory(
            cfg, node_list, target_version(cfg), turn=turn, signaling=signaling, user=spec.ssh_user,
            private_key=options.get("private_key") or (key if key.exists() else None),
            node_state=provider.records_nodes, signaling_node=options.get("signaling_node"),
        ).to_dict()  # fmt: skip

    # Two inventories: one machine in both groups would mix the TURN and signaling certificates.
    files = {"turn.yml": build(None, ()), "signaling.yml": build((), None), "vars.json": ansible.base_vars()}
    if with_secrets:
        files["secrets.json"] = ansible.secret_vars(keyring.load(cfg.secrets_path))
    for name, doc in files.items():
        atomic_write(out / name, json.dumps(doc, indent=2) + "\n", mode=0o600)
        output.result(str(out / name))


def register(app: typer.Typer) -> None:
    app.command("inventory")(inventory)

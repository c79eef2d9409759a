"""`aws` provider: a tagged security group, key pair, Debian 12 instances, Elastic IPs, Route53 names.

Tags (`turnkit:project`, `turnkit:region`, `turnkit:node`) are the source of truth. Every resource
is tagged in the same call that creates it (TagSpecifications), and every step looks up by tag
before it creates, so a re-run after a crash converges without duplicates or orphans.
The endpoint is boto3's own business (`AWS_ENDPOINT_URL` is honoured by boto3 itself).
"""

from __future__ import annotations

import contextlib
import ipaddress
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, WaiterError

from turnkit.config import Config
from turnkit.errors import ConfigError
from turnkit.nodes import Node
from turnkit.progress import Progress
from turnkit.provision.base import Action, Diff, Provider, ProvisionError, forget_nodes, record_nodes, recorded_nodes

#: Official Debian cloud images account (https://wiki.debian.org/Cloud/AmazonEC2Image).
DEBIAN_OWNER = "136693071363"
DEBIAN_12_NAME = "debian-12-amd64-*"
TAG_PROJECT, TAG_REGION, TAG_NODE = "turnkit:project", "turnkit:region", "turnkit:node"
LIVE_STATES = ["pending", "running", "stopping", "stopped"]
#: botocore retries throttling and transient errors with backoff ("standard" retry mode).
BOTO_CONFIG = BotoConfig(retries={"mode": "standard", "max_attempts": 10}, connect_timeout=10, read_timeout=60)

#: What to tell the operator for AWS error codes that have a clear remedy.
HINTS: dict[str, str] = {
    "UnauthorizedOperation": "the AWS identity lacks permission for this call",
    "AuthFailure": "AWS rejected the credentials",
    "InsufficientInstanceCapacity": "AWS has no capacity for this instance type here; try another instance_type",
    "InstanceLimitExceeded": "instance quota reached; raise it in Service Quotas",
    "VcpuLimitExceeded": "vCPU quota reached; raise it in Service Quotas",
    "AddressLimitExceeded": "Elastic IP quota reached; raise it in Service Quotas",
    "RulesPerSecurityGroupLimitExceeded": "security group rule quota reached",
    "RequestLimitExceeded": "AWS kept throttling after retries; try again later",
    "Throttling": "AWS kept throttling after retries; try again later",
}

Rule = tuple[str, int, int, str]  # (protocol, from_port, to_port, cidr)


def _first_line(text: str, limit: int = 200) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def desired_rules(cfg: Config, region: str, node_ips: Iterable[str] = ()) -> set[Rule]:
    """Ingress the nodes need (RFC 8656 ports, relay range, HTTP-01), SSH only from the operator CIDR,
    and the central usage store (`[meter] central_port`, on the signaling host: the first node) only
    from the region's own nodes' addresses: their meters ship usage there, and the signaling host's
    quota gate reads it through its public name (docs/metering.md)."""
    ports, anywhere = cfg.ports, "0.0.0.0/0"
    rules: set[Rule] = {
        ("udp", ports.listening, ports.listening, anywhere),
        ("tcp", ports.listening, ports.listening, anywhere),
        ("tcp", ports.tls, ports.tls, anywhere),
        ("udp", ports.relay_min, ports.relay_max, anywhere),
        ("tcp", 80, 80, anywhere),
    }
    if ports.tls_443:
        rules.add(("tcp", 443, 443, anywhere))
    if cfg.coturn.tcp_relay:
        rules.add(("tcp", ports.relay_min, ports.relay_max, anywhere))
    ssh_cidr = cfg.region(region).ssh_cidr
    if ssh_cidr:
        rules.add(("tcp", 22, 22, ssh_cidr))
    central = cfg.meter.central_port
    rules.update(("tcp", central, central, f"{ipaddress.IPv4Address(ip)}/32") for ip in node_ips)
    return rules


def rules_of(group: dict[str, Any]) -> set[Rule]:
    out: set[Rule] = set()
    for perm in group.get("IpPermissions", []):
        for rng in perm.get("IpRanges", []):
            out.add((perm["IpProtocol"], perm.get("FromPort", -1), perm.get("ToPort", -1), rng["CidrIp"]))
    return out


def _permissions(rules: set[Rule]) -> list[dict[str, Any]]:
    return [
        {"IpProtocol": p, "FromPort": lo, "ToPort": hi, "IpRanges": [{"CidrIp": cidr}]}
        for p, lo, hi, cidr in sorted(rules)
    ]


def _describe_rules(rules: set[Rule]) -> str:
    return ", ".join(f"{lo if lo == hi else f'{lo}-{hi}'}/{p} from {cidr}" for p, lo, hi, cidr in sorted(rules))


def _named(actions: list[Action], verb: str, kind: str) -> list[str]:
    """The names of the planned actions of one verb and kind, in plan order."""
    return [a.name for a in actions if a.verb == verb and a.kind == kind]


def _tag(resource: dict[str, Any], key: str) -> str | None:
    for t in resource.get("Tags", []):
        if t["Key"] == key:
            return str(t["Value"])
    return None


@dataclass
class Found:
    """What exists in the account for one region, found by tag."""

    group: dict[str, Any] | None
    key_pair: dict[str, Any] | None
    instances: dict[str, dict[str, Any]]
    addresses: dict[str, dict[str, Any]]
    records: dict[str, str]


class AwsProvider(Provider[Found]):
    """Converges one turnkit region in one AWS region; its nodes are configured over SSH (Ansible)."""

    records_nodes = True

    def __init__(self, cfg: Config, region: str) -> None:
        super().__init__(cfg, region)
        self.aws_region = cfg.cloud_region(region)
        self.project = cfg.project.name
        self.base_name = f"turnkit-{self.project}-{region}"
        self.where = f"region `{region}` ({self.aws_region})"
        self._ec2: Any = None
        self._route53: Any = None
        self._zone: str | None = None  # the hosted zone id, looked up once per run

    # -- clients and error mapping -------------------------------------------------------

    @property
    def ec2(self) -> Any:
        if self._ec2 is None:
            with self.step("connect"):
                self._ec2 = boto3.session.Session(region_name=self.aws_region).client("ec2", config=BOTO_CONFIG)
        return self._ec2

    @property
    def route53(self) -> Any:
        if self._route53 is None:
            with self.step("connect"):
                self._route53 = boto3.session.Session(region_name=self.aws_region).client("route53", config=BOTO_CONFIG)
        return self._route53

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Turn any AWS failure inside a step into one line naming the region and the step."""
        try:
            yield
        except NoCredentialsError:
            raise ProvisionError(
                f"{self.where}: {name}: no AWS credentials (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
            ) from None
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code = str(err.get("Code", "Unknown"))
            text = HINTS.get(code) or _first_line(str(err.get("Message", "")))
            raise ProvisionError(f"{self.where}: {name}: {code}: {text}", code) from None
        except WaiterError as exc:
            raise ProvisionError(f"{self.where}: {name}: gave up waiting ({_first_line(str(exc))})") from None
        except BotoCoreError as exc:
            raise ProvisionError(f"{self.where}: {name}: {_first_line(str(exc))}") from None

    def _tags(self, node: str | None = None, name: str | None = None) -> list[dict[str, str]]:
        tags = [{"Key": TAG_PROJECT, "Value": self.project}, {"Key": TAG_REGION, "Value": self.region}]
        if node:
            tags.append({"Key": TAG_NODE, "Value": node})
        tags.append({"Key": "Name", "Value": name or (f"{self.base_name}-{node}" if node else self.base_name)})
        return tags

    def _spec(self, kind: str, node: str | None = None) -> list[dict[str, Any]]:
        return [{"ResourceType": kind, "Tags": self._tags(node)}]

    @property
    def _filters(self) -> list[dict[str, Any]]:
        return [
            {"Name": f"tag:{TAG_PROJECT}", "Values": [self.project]},
            {"Name": f"tag:{TAG_REGION}", "Values": [self.region]},
        ]

    # -- lookups (read-only) ---------------------------------------------------------------

    def wanted(self) -> list[str]:
        return [f"turn-{i + 1}" for i in range(self.spec.nodes)]

    def hostname(self, node: str) -> str:
        return f"{node}.{self.region}.{self.cfg.project.domain}"

    def find(self) -> Found:
        with self.step("look up security group"):
            groups = self.ec2.describe_security_groups(Filters=self._filters)["SecurityGroups"]
        with self.step("look up key pair"):
            pairs = self.ec2.describe_key_pairs(Filters=self._filters)["KeyPairs"]
        with self.step("look up instances"):
            pages = self.ec2.get_paginator("describe_instances").paginate(
                Filters=[*self._filters, {"Name": "instance-state-name", "Values": LIVE_STATES}]
            )
            instances = {
                _tag(i, TAG_NODE) or i["InstanceId"]: i
                for page in pages
                for r in page["Reservations"]
                for i in r["Instances"]
            }
        with self.step("look up Elastic IPs"):
            addrs = self.ec2.describe_addresses(Filters=self._filters)["Addresses"]
        return Found(
            group=groups[0] if groups else None,
            key_pair=pairs[0] if pairs else None,
            instances=instances,
            addresses={_tag(a, TAG_NODE) or a["AllocationId"]: a for a in addrs},
            records=self._records() if self.spec.route53_zone else {},
        )

    def _zone_id(self) -> str:
        if self._zone is None:
            self._zone = self._find_zone()
        return self._zone

    def _find_zone(self) -> str:
        zone = self.spec.route53_zone or ""
        if "." not in zone:
            return zone
        with self.step("look up Route53 zone"):
            zones = self.route53.list_hosted_zones_by_name(DNSName=zone, MaxItems="1")["HostedZones"]
        if not zones or zones[0]["Name"].rstrip(".") != zone.rstrip("."):
            raise ConfigError(
                f"{self.cfg.path.name}: regions.{self.region}.route53_zone: no such hosted zone, got {zone!r}"
            )
        return str(zones[0]["Id"]).rsplit("/", 1)[-1]

    def _records(self) -> dict[str, str]:
        """A records `turn-N.<region>.<domain>` → address."""
        suffix = f".{self.region}.{self.cfg.project.domain}."
        out: dict[str, str] = {}
        with self.step("look up DNS records"):
            pages = self.route53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=self._zone_id())
            for page in pages:
                for rr in page["ResourceRecordSets"]:
                    name = rr["Name"]
                    if rr["Type"] == "A" and name.startswith("turn-") and name.endswith(suffix):
                        out[name.rstrip(".")] = rr["ResourceRecords"][0]["Value"]
        return out

    def newest_debian(self) -> dict[str, Any]:
        with self.step("find Debian 12 image"):
            images = self.ec2.describe_images(
                Owners=[DEBIAN_OWNER],
                Filters=[
                    {"Name": "name", "Values": [DEBIAN_12_NAME]},
                    {"Name": "architecture", "Values": ["x86_64"]},
                    {"Name": "state", "Values": ["available"]},
                ],
            )["Images"]
        if not images:
            raise ProvisionError(f"{self.where}: find Debian 12 image: no `{DEBIAN_12_NAME}` image from {DEBIAN_OWNER}")
        return max(images, key=lambda im: im.get("CreationDate", ""))

    # -- plan ------------------------------------------------------------------------------

    def _compute_diff(self) -> Diff[Found]:
        found = self.find()
        return Diff(self._actions(found), found)

    def _node_ips(self, found: Found) -> list[str]:
        """The Elastic IPs of the nodes the region keeps (known so far: new ones come at apply)."""
        return [str(found.addresses[n]["PublicIp"]) for n in self.wanted() if n in found.addresses]

    def _actions(self, found: Found) -> list[Action]:
        actions: list[Action] = []
        want = desired_rules(self.cfg, self.region, self._node_ips(found))
        if found.group is None:
            actions.append(Action("create", "security-group", self.base_name, _describe_rules(want)))
        else:
            have = rules_of(found.group)
            add, drop = want - have, have - want
            if add or drop:
                detail = "; ".join(
                    part
                    for part in (
                        f"add {_describe_rules(add)}" if add else "",
                        f"remove {_describe_rules(drop)}" if drop else "",
                    )
                    if part
                )
                actions.append(Action("update", "security-group", found.group["GroupId"], detail))
            else:
                actions.append(Action("keep", "security-group", found.group["GroupId"]))
        actions.append(
            Action("keep", "key-pair", found.key_pair["KeyName"])
            if found.key_pair
            else Action("create", "key-pair", self.base_name, self.spec.ssh_public_key)
        )
        for node in self.wanted():
            inst = found.instances.get(node)
            if inst is None:
                actions.append(Action("create", "instance", node, f"{self.spec.instance_type}, Debian 12, IMDSv2"))
            else:
                actions.append(Action("keep", "instance", node, inst["InstanceId"]))
            addr = found.addresses.get(node)
            if addr is None:
                actions.append(Action("create", "elastic-ip", node))
            elif inst is None or addr.get("InstanceId") != inst["InstanceId"]:
                actions.append(Action("update", "elastic-ip", node, f"{addr['PublicIp']} → associate"))
            else:
                actions.append(Action("keep", "elastic-ip", node, addr["PublicIp"]))
            if self.spec.route53_zone:
                name = self.hostname(node)
                current = found.records.get(name)
                if current is None:
                    actions.append(Action("create", "dns-record", name))
                elif addr is None or current != addr["PublicIp"]:
                    actions.append(Action("update", "dns-record", name, f"was {current}"))
                else:
                    actions.append(Action("keep", "dns-record", name, current))
        wanted = set(self.wanted())
        for node, inst in sorted(found.instances.items()):
            if node not in wanted:
                actions.append(Action("delete", "instance", node, inst["InstanceId"]))
        for node, addr in sorted(found.addresses.items()):
            if node not in wanted:
                actions.append(Action("delete", "elastic-ip", node, addr["PublicIp"]))
        for name in sorted(found.records):
            if name.split(".", 1)[0] not in wanted:
                actions.append(Action("delete", "dns-record", name))
        return actions

    # -- apply -----------------------------------------------------------------------------

    def _execute(self, diff: Diff[Found], progress: Progress) -> list[Node]:
        """Carry out the plan: the group and key pair, the plan's deletions and launches, then converge
        each node's address and DNS name (which depend on instance ids known only after launch), and
        last the usage store's rule, which names every node's address."""
        found = diff.found
        group_id, rules = self._ensure_group(found, progress)
        key_name = self._ensure_key_pair(found, progress)
        self._remove_extra(diff, progress)
        image: dict[str, Any] | None = None
        for node in _named(diff.actions, "create", "instance"):
            image = image or self.newest_debian()
            found.instances[node] = self._launch(node, image, group_id, key_name, progress)
        self._wait_running([i["InstanceId"] for i in found.instances.values()], progress)
        with self.step("describe instances"):
            ids = [found.instances[n]["InstanceId"] for n in self.wanted()]
            fresh = [i for r in self.ec2.describe_instances(InstanceIds=ids)["Reservations"] for i in r["Instances"]]
        by_id = {i["InstanceId"]: i for i in fresh}
        nodes: list[Node] = []
        for node in self.wanted():
            inst = by_id[found.instances[node]["InstanceId"]]
            public_ip = self._ensure_address(node, inst["InstanceId"], found, progress)
            hostname = public_ip
            if self.spec.route53_zone:
                hostname = self._ensure_record(node, public_ip, found, progress)
            nodes.append(Node(node, self.region, hostname, public_ip, inst.get("PrivateIpAddress")))
        # The usage store's rule names every node's address, which new nodes got only just now.
        ips = [n.public_ip for n in nodes if n.public_ip]
        self._converge_rules(group_id, rules, desired_rules(self.cfg, self.region, ips), progress)
        record_nodes(self.cfg, self.region, nodes)
        progress(f"{self.where}: {len(nodes)} node(s) ready")
        return nodes

    def _ensure_group(self, found: Found, progress: Progress) -> tuple[str, set[Rule]]:
        """The group, with the rules known before any launch; returns its id and rules."""
        want = desired_rules(self.cfg, self.region, self._node_ips(found))
        if found.group is None:
            with self.step("create security group"):
                group_id = str(
                    self.ec2.create_security_group(
                        GroupName=self.base_name,
                        Description=f"turnkit {self.project} TURN nodes in region {self.region}",
                        TagSpecifications=self._spec("security-group"),
                    )["GroupId"]
                )
            progress(f"created security group {group_id}")
            have: set[Rule] = set()
        else:
            group_id = str(found.group["GroupId"])
            have = rules_of(found.group)
        self._converge_rules(group_id, have, want, progress)
        return group_id, want

    def _converge_rules(self, group_id: str, have: set[Rule], want: set[Rule], progress: Progress) -> None:
        if want - have:
            with self.step("authorize security group ingress"):
                self.ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=_permissions(want - have))
            progress(f"opened {_describe_rules(want - have)}")
        if have - want:
            with self.step("revoke security group ingress"):
                self.ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=_permissions(have - want))
            progress(f"closed {_describe_rules(have - want)}")

    def _ensure_key_pair(self, found: Found, progress: Progress) -> str:
        if found.key_pair is not None:
            return str(found.key_pair["KeyName"])
        path = Path(self.spec.ssh_public_key).expanduser()
        if not path.is_absolute():
            path = self.cfg.resolve(self.spec.ssh_public_key)
        try:
            material = path.read_bytes()
        except OSError:
            raise ConfigError(
                f"{self.cfg.path.name}: regions.{self.region}.ssh_public_key: cannot read, got {str(path)!r}"
            ) from None
        with self.step("import key pair"):
            self.ec2.import_key_pair(
                KeyName=self.base_name, PublicKeyMaterial=material, TagSpecifications=self._spec("key-pair")
            )
        progress(f"imported key pair {self.base_name}")
        return self.base_name

    def _launch(self, node: str, image: dict[str, Any], group_id: str, key_name: str, progress: Progress) -> Any:
        with self.step(f"launch instance {node}"):
            inst = self.ec2.run_instances(
                ImageId=image["ImageId"],
                InstanceType=self.spec.instance_type,
                MinCount=1,
                MaxCount=1,
                KeyName=key_name,
                SecurityGroupIds=[group_id],
                MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled"},
                TagSpecifications=[
                    {"ResourceType": "instance", "Tags": self._tags(node)},
                    {"ResourceType": "volume", "Tags": self._tags(node)},
                ],
            )["Instances"][0]
        progress(f"launched {node} ({inst['InstanceId']}, {image.get('Name', image['ImageId'])})")
        return inst

    def _wait_running(self, ids: list[str], progress: Progress) -> None:
        if not ids:
            return
        progress(f"waiting for {len(ids)} instance(s) to run")
        with self.step("wait for instances"):
            self.ec2.get_waiter("instance_running").wait(InstanceIds=ids, WaiterConfig={"Delay": 5, "MaxAttempts": 120})

    def _ensure_address(self, node: str, instance_id: str, found: Found, progress: Progress) -> str:
        addr = found.addresses.get(node)
        if addr is None:
            with self.step(f"allocate Elastic IP for {node}"):
                addr = self.ec2.allocate_address(Domain="vpc", TagSpecifications=self._spec("elastic-ip", node))
            found.addresses[node] = addr
            progress(f"allocated Elastic IP {addr['PublicIp']} for {node}")
        if addr.get("InstanceId") != instance_id:
            with self.step(f"associate Elastic IP with {node}"):
                self.ec2.associate_address(AllocationId=addr["AllocationId"], InstanceId=instance_id)
            progress(f"associated {addr['PublicIp']} with {node}")
        return str(addr["PublicIp"])

    def _change_record(self, action: str, name: str, ip: str) -> None:
        self.route53.change_resource_record_sets(
            HostedZoneId=self._zone_id(),
            ChangeBatch={
                "Comment": f"turnkit {self.project} {self.region}",
                "Changes": [
                    {
                        "Action": action,
                        "ResourceRecordSet": {
                            "Name": name,
                            "Type": "A",
                            "TTL": 300,
                            "ResourceRecords": [{"Value": ip}],
                        },
                    }
                ],
            },
        )

    def _ensure_record(self, node: str, ip: str, found: Found, progress: Progress) -> str:
        name = self.hostname(node)
        if found.records.get(name) != ip:
            with self.step(f"write DNS record {name}"):
                self._change_record("UPSERT", name, ip)
            progress(f"DNS {name} → {ip}")
        return name

    def _remove_extra(self, diff: Diff[Found], progress: Progress) -> None:
        """Scale down: the plan's deletions, DNS first, then addresses, then instances."""
        found = diff.found
        for name in _named(diff.actions, "delete", "dns-record"):
            self._delete_record(name, found.records.pop(name), progress)
        for node in _named(diff.actions, "delete", "elastic-ip"):
            self._release(node, found.addresses.pop(node), progress)
        extra = {n: found.instances.pop(n) for n in _named(diff.actions, "delete", "instance")}
        self._terminate(extra, progress)

    def _delete_record(self, name: str, ip: str, progress: Progress) -> Action:
        with self.step(f"delete DNS record {name}"):
            self._change_record("DELETE", name, ip)
        progress(f"deleted DNS {name}")
        return Action("delete", "dns-record", name, ip)

    def _release(self, node: str, addr: dict[str, Any], progress: Progress) -> Action:
        with self.step(f"release Elastic IP of {node}"):
            if addr.get("AssociationId"):
                self.ec2.disassociate_address(AssociationId=addr["AssociationId"])
            self.ec2.release_address(AllocationId=addr["AllocationId"])
        progress(f"released Elastic IP {addr['PublicIp']} ({node})")
        return Action("delete", "elastic-ip", node, addr["PublicIp"])

    def _terminate(self, instances: dict[str, dict[str, Any]], progress: Progress) -> list[Action]:
        if not instances:
            return []
        ids = [i["InstanceId"] for i in instances.values()]
        with self.step("terminate instances"):
            self.ec2.terminate_instances(InstanceIds=ids)
        progress(f"terminating {', '.join(sorted(instances))}")
        with self.step("wait for instances to terminate"):
            self.ec2.get_waiter("instance_terminated").wait(
                InstanceIds=ids, WaiterConfig={"Delay": 5, "MaxAttempts": 120}
            )
        return [Action("delete", "instance", n, i["InstanceId"]) for n, i in sorted(instances.items())]

    # -- destroy ---------------------------------------------------------------------------

    def destroy_plan(self) -> list[Action]:
        found = self.find()
        actions = [Action("delete", "dns-record", name, ip) for name, ip in sorted(found.records.items())]
        actions += [Action("delete", "elastic-ip", n, a["PublicIp"]) for n, a in sorted(found.addresses.items())]
        actions += [Action("delete", "instance", n, i["InstanceId"]) for n, i in sorted(found.instances.items())]
        if found.group:
            actions.append(Action("delete", "security-group", found.group["GroupId"]))
        if found.key_pair:
            actions.append(Action("delete", "key-pair", found.key_pair["KeyName"]))
        return actions

    def destroy(self, progress: Progress) -> list[Action]:
        """Remove everything tagged for the region (DNS, addresses, instances, group, key); returns what went."""
        found = self.find()
        done = [self._delete_record(name, ip, progress) for name, ip in sorted(found.records.items())]
        done += [self._release(node, addr, progress) for node, addr in sorted(found.addresses.items())]
        done += self._terminate(found.instances, progress)
        if found.group:
            done.append(self._delete_group(str(found.group["GroupId"]), progress))
        if found.key_pair:
            name = found.key_pair["KeyName"]
            with self.step("delete key pair"):
                self.ec2.delete_key_pair(KeyName=name)
            progress(f"deleted key pair {name}")
            done.append(Action("delete", "key-pair", name))
        forget_nodes(self.cfg, self.region)
        return done

    def _delete_group(self, group_id: str, progress: Progress) -> Action:
        """Delete the group; ENIs of terminated instances may hold it for a while (DependencyViolation)."""
        deadline = time.monotonic() + 300
        while True:
            try:
                with self.step("delete security group"):
                    self.ec2.delete_security_group(GroupId=group_id)
                break
            except ProvisionError as exc:
                if exc.code != "DependencyViolation" or time.monotonic() > deadline:
                    raise
                time.sleep(5)
        progress(f"deleted security group {group_id}")
        return Action("delete", "security-group", group_id)

    def nodes(self) -> list[Node]:
        return recorded_nodes(self.cfg, self.region)

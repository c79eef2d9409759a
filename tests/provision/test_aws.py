"""The aws provider against moto in server mode: same boto3 code path as AWS, only AWS_ENDPOINT_URL differs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.helpers.cli import run_cli
from tests.helpers.provision import write_config
from turnkit import config as config_mod
from turnkit.errors import ExitCode, TurnkitError
from turnkit.nodes import region_nodes
from turnkit.provision import ProvisionError, changes, provider_for
from turnkit.provision.aws import TAG_NODE, TAG_PROJECT, TAG_REGION, AwsProvider
from turnkit.provision.base import state_file

REGION = "eu-central-1"


def ec2() -> Any:
    return boto3.client("ec2", region_name=REGION)


def tagged(project: str = "demo") -> list[dict[str, Any]]:
    return [{"Name": f"tag:{TAG_PROJECT}", "Values": [project]}, {"Name": f"tag:{TAG_REGION}", "Values": ["eu"]}]


def live_instances(project: str = "demo") -> list[dict[str, Any]]:
    states = {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}
    pages = ec2().describe_instances(Filters=[*tagged(project), states])["Reservations"]
    return [i for r in pages for i in r["Instances"]]


def inventory(project: str = "demo") -> dict[str, int]:
    """How many turnkit-tagged resources of each kind exist."""
    client = ec2()
    return {
        "security_groups": len(client.describe_security_groups(Filters=tagged(project))["SecurityGroups"]),
        "key_pairs": len(client.describe_key_pairs(Filters=tagged(project))["KeyPairs"]),
        "instances": len(live_instances(project)),
        "addresses": len(client.describe_addresses(Filters=tagged(project))["Addresses"]),
    }


def test_plan_on_empty_account_creates_everything_and_touches_nothing(aws_env: str, tmp_path: Path) -> None:
    cfg = config_mod.load(write_config(tmp_path))
    actions = provider_for(cfg, "eu").plan()
    assert [(a.verb, a.kind, a.name) for a in actions] == [
        ("create", "security-group", "turnkit-demo-eu"),
        ("create", "key-pair", "turnkit-demo-eu"),
        ("create", "instance", "turn-1"),
        ("create", "elastic-ip", "turn-1"),
        ("create", "instance", "turn-2"),
        ("create", "elastic-ip", "turn-2"),
    ]
    assert "22/tcp from 203.0.113.0/24" in actions[0].detail
    assert inventory() == {"security_groups": 0, "key_pairs": 0, "instances": 0, "addresses": 0}
    assert not state_file(cfg, "eu").exists()


def test_provision_converges_and_rerun_changes_nothing(aws_env: str, tmp_path: Path) -> None:
    path = write_config(tmp_path)
    first = run_cli("provision", "--region", "eu", "--json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    nodes = json.loads(first.stdout)["nodes"]
    assert [n["name"] for n in nodes] == ["turn-1", "turn-2"]
    assert inventory() == {"security_groups": 1, "key_pairs": 1, "instances": 2, "addresses": 2}

    # Nodes are recorded for `region_nodes`: public = the Elastic IP, private = the instance's address.
    cfg = config_mod.load(path)
    recorded = region_nodes(cfg, "eu")
    assert [n.to_dict() for n in recorded] == nodes
    instances = {_tag(i, TAG_NODE): i for i in live_instances()}
    for node in recorded:
        inst = instances[node.name]
        assert node.private_ip == inst["PrivateIpAddress"]
        assert node.public_ip == inst["PublicIpAddress"]
        assert node.external_ip == f"{node.public_ip}/{node.private_ip}"

    # IMDSv2 only, newest official Debian 12 amd64 image (not the older one, not arm64).
    for inst in instances.values():
        assert inst["MetadataOptions"]["HttpTokens"] == "required"
        assert inst["ImageId"] == "ami-0de0000000000new"
        assert inst["KeyName"] == "turnkit-demo-eu"

    plan = run_cli("plan", "--region", "eu", "--json", cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    assert {a["verb"] for a in json.loads(plan.stdout)["actions"]} == {"keep"}

    again = run_cli("provision", "--region", "eu", "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["nodes"] == nodes
    assert inventory() == {"security_groups": 1, "key_pairs": 1, "instances": 2, "addresses": 2}


def _tag(resource: dict[str, Any], key: str) -> str:
    return next(t["Value"] for t in resource["Tags"] if t["Key"] == key)


def _ingress(group: dict[str, Any]) -> set[tuple[str, int, int, str]]:
    return {
        (p["IpProtocol"], p["FromPort"], p["ToPort"], r["CidrIp"])
        for p in group["IpPermissions"]
        for r in p.get("IpRanges", [])
    }


def test_security_group_opens_turn_ports_and_ssh_only_from_operator(aws_env: str, tmp_path: Path) -> None:
    """…and the usage store's port only from the region's own nodes (their meters, the quota gate)."""
    cfg = config_mod.load(write_config(tmp_path, "\n[ports]\ntls_443 = true\n"))
    nodes = provider_for(cfg, "eu").apply(lambda _: None)
    (group,) = ec2().describe_security_groups(Filters=tagged())["SecurityGroups"]
    central = cfg.meter.central_port
    assert len(nodes) == 2 and all(n.public_ip for n in nodes)
    assert _ingress(group) == {
        *{("tcp", central, central, f"{n.public_ip}/32") for n in nodes},
        ("udp", 3478, 3478, "0.0.0.0/0"),
        ("tcp", 3478, 3478, "0.0.0.0/0"),
        ("tcp", 5349, 5349, "0.0.0.0/0"),
        ("tcp", 443, 443, "0.0.0.0/0"),
        ("udp", 49152, 65535, "0.0.0.0/0"),
        ("tcp", 80, 80, "0.0.0.0/0"),
        ("tcp", 22, 22, "203.0.113.0/24"),
    }


def test_without_ssh_cidr_there_is_no_ssh_rule_and_changed_rules_converge(aws_env: str, tmp_path: Path) -> None:
    cfg = config_mod.load(write_config(tmp_path))
    provider_for(cfg, "eu").apply(lambda _: None)
    text = (tmp_path / "turnkit.toml").read_text().replace('ssh_cidr = "203.0.113.0/24"\n', "")
    (tmp_path / "turnkit.toml").write_text(text)
    cfg = config_mod.load(tmp_path / "turnkit.toml")
    plan = provider_for(cfg, "eu").plan()
    assert [str(a) for a in changes(plan)] == [
        f"update security-group {plan[0].name} (remove 22/tcp from 203.0.113.0/24)"
    ]
    provider_for(cfg, "eu").apply(lambda _: None)
    (group,) = ec2().describe_security_groups(Filters=tagged())["SecurityGroups"]
    assert not any(p["IpProtocol"] == "tcp" and p["FromPort"] == 22 for p in group["IpPermissions"])
    assert not changes(provider_for(cfg, "eu").plan())


def test_failure_mid_provision_is_one_line_and_rerun_converges(aws_env: str, tmp_path: Path) -> None:
    write_config(tmp_path, 'instance_type = "t9.nonexistent"\n')
    failed = run_cli("provision", "--region", "eu", cwd=tmp_path)
    assert failed.returncode == 3
    assert [line for line in failed.stderr.splitlines() if line.startswith("error")] == [
        "error: region `eu` (eu-central-1): launch instance turn-1: InvalidInstanceType.NotFound: "
        "The instance type 't9.nonexistent' does not exist"
    ]
    assert "Traceback" not in failed.stderr
    # The steps before the failure left tagged resources that the next run finds again.
    assert inventory() == {"security_groups": 1, "key_pairs": 1, "instances": 0, "addresses": 0}

    # Nothing is orphaned: what the failed run created is exactly what destroy finds.
    pending = run_cli("plan", "--region", "eu", "--json", cwd=tmp_path)
    assert [(a["verb"], a["kind"]) for a in json.loads(pending.stdout)["actions"]][:2] == [
        ("keep", "security-group"),
        ("keep", "key-pair"),
    ]

    text = (tmp_path / "turnkit.toml").read_text().replace("t9.nonexistent", "t3.small")
    (tmp_path / "turnkit.toml").write_text(text)
    fixed = run_cli("provision", "--region", "eu", cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert inventory() == {"security_groups": 1, "key_pairs": 1, "instances": 2, "addresses": 2}


def test_crash_after_launch_is_adopted_not_duplicated(aws_env: str, tmp_path: Path) -> None:
    """A run killed right after RunInstances left a tagged instance and no address: the re-run adopts it."""
    cfg = config_mod.load(write_config(tmp_path))
    provider = provider_for(cfg, "eu")
    provider.apply(lambda _: None)
    client = ec2()
    turn2 = next(i for i in live_instances() if _tag(i, TAG_NODE) == "turn-2")
    address = next(a for a in client.describe_addresses(Filters=tagged())["Addresses"] if _tag(a, TAG_NODE) == "turn-2")
    client.disassociate_address(AssociationId=address["AssociationId"])
    client.release_address(AllocationId=address["AllocationId"])
    state_file(cfg, "eu").unlink()

    plan = changes(provider_for(cfg, "eu").plan())
    central = cfg.meter.central_port
    assert [str(a) for a in plan] == [  # the released address no longer reaches the usage store
        f"update security-group {plan[0].name} (remove {central}/tcp from {address['PublicIp']}/32)",
        "create elastic-ip turn-2",
    ]
    nodes = provider_for(cfg, "eu").apply(lambda _: None)
    assert inventory() == {"security_groups": 1, "key_pairs": 1, "instances": 2, "addresses": 2}
    assert next(i for i in live_instances() if _tag(i, TAG_NODE) == "turn-2")["InstanceId"] == turn2["InstanceId"]
    assert region_nodes(cfg, "eu") == nodes
    assert not changes(provider_for(cfg, "eu").plan())  # the new address's rule came with it


def test_scale_down_removes_only_the_extra_node(aws_env: str, tmp_path: Path) -> None:
    """…and its way into the usage store (the security group's rule for its address)."""
    cfg = config_mod.load(write_config(tmp_path))
    before = provider_for(cfg, "eu").apply(lambda _: None)
    (tmp_path / "turnkit.toml").write_text((tmp_path / "turnkit.toml").read_text().replace("nodes = 2", "nodes = 1"))
    cfg = config_mod.load(tmp_path / "turnkit.toml")
    plan = changes(provider_for(cfg, "eu").plan())
    central = cfg.meter.central_port
    assert [str(a) for a in plan] == [
        f"update security-group {plan[0].name} (remove {central}/tcp from {before[1].public_ip}/32)",
        f"delete instance turn-2 ({plan[1].detail})",
        f"delete elastic-ip turn-2 ({before[1].public_ip})",
    ]
    nodes = provider_for(cfg, "eu").apply(lambda _: None)
    assert [n.name for n in nodes] == ["turn-1"]
    assert inventory() == {"security_groups": 1, "key_pairs": 1, "instances": 1, "addresses": 1}
    (group,) = ec2().describe_security_groups(Filters=tagged())["SecurityGroups"]
    assert {r for r in _ingress(group) if r[1] == central} == {("tcp", central, central, f"{nodes[0].public_ip}/32")}
    assert not changes(provider_for(cfg, "eu").plan())


def test_route53_records_follow_the_nodes(aws_env: str, tmp_path: Path) -> None:
    route53 = boto3.client("route53", region_name=REGION)
    zone = route53.create_hosted_zone(Name="example.test", CallerReference="turnkit-test")["HostedZone"]
    cfg = config_mod.load(write_config(tmp_path, 'route53_zone = "example.test"\n'))
    nodes = provider_for(cfg, "eu").apply(lambda _: None)
    assert [n.hostname for n in nodes] == ["turn-1.eu.example.test", "turn-2.eu.example.test"]
    records = route53.list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]
    a_records = {r["Name"]: r["ResourceRecords"][0]["Value"] for r in records if r["Type"] == "A"}
    assert a_records == {f"{n.hostname}.": n.public_ip for n in nodes}
    assert not changes(provider_for(cfg, "eu").plan())

    provider_for(cfg, "eu").destroy(lambda _: None)
    records = route53.list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]
    assert [r for r in records if r["Type"] == "A"] == []


def test_destroy_leaves_nothing_tagged(aws_env: str, tmp_path: Path) -> None:
    write_config(tmp_path)
    assert run_cli("provision", "--region", "eu", cwd=tmp_path).returncode == 0
    # Another project's resources in the same account are not touched.
    other = tmp_path / "other"
    other.mkdir()
    write_config(other, project="other")
    assert run_cli("provision", "--region", "eu", cwd=other).returncode == 0

    refused = run_cli("destroy", "--region", "eu", cwd=tmp_path, stdin="")
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[-1] == (
        "error: destroy 6 resource(s) of region `eu`: refusing without confirmation; pass --yes"
    )
    assert inventory()["instances"] == 2

    done = run_cli("destroy", "--region", "eu", "--yes", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["destroyed"]) == 6
    assert inventory() == {"security_groups": 0, "key_pairs": 0, "instances": 0, "addresses": 0}
    tagging = boto3.client("resourcegroupstaggingapi", region_name=REGION)
    leftovers = tagging.get_resources(TagFilters=[{"Key": TAG_PROJECT, "Values": ["demo"]}])
    assert [r["ResourceARN"] for r in leftovers["ResourceTagMappingList"] if ":instance/" not in r["ResourceARN"]] == []
    assert not state_file(config_mod.load(tmp_path / "turnkit.toml"), "eu").exists()
    assert inventory("other") == {"security_groups": 1, "key_pairs": 1, "instances": 2, "addresses": 2}

    again = run_cli("destroy", "--region", "eu", "--yes", cwd=tmp_path)
    assert again.returncode == 0
    assert again.stdout.strip() == "destroyed 0 resource(s) of region `eu`"


def test_aws_errors_are_one_line_naming_region_and_step(
    aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(tmp_path)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    out = run_cli("plan", "--region", "eu", cwd=tmp_path)
    assert out.returncode == 3
    assert out.stderr.strip() == (
        "error: region `eu` (eu-central-1): look up security group: no AWS credentials "
        "(set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
    )


def test_missing_ssh_key_names_the_key(aws_env: str, tmp_path: Path) -> None:
    path = write_config(tmp_path)
    (tmp_path / "id_ed25519.pub").unlink()
    cfg = config_mod.load(path)
    with pytest.raises(config_mod.ConfigError, match=r"regions\.eu\.ssh_public_key: cannot read"):
        provider_for(cfg, "eu").apply(lambda _: None)


def test_provision_errors_map_to_the_runtime_exit_code() -> None:
    assert issubclass(ProvisionError, TurnkitError)
    assert ProvisionError.exit_code is ExitCode.RUNTIME


def test_deploy_dry_run_plans_and_status_reads_recorded_nodes(aws_env: str, tmp_path: Path) -> None:
    write_config(tmp_path)
    dry = run_cli("deploy", "--region", "eu", "--dry-run", "--json", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert (report["dry_run"], report["nodes"]) == (True, [])
    assert [a["verb"] for a in report["actions"]] == ["create"] * 6
    assert inventory() == {"security_groups": 0, "key_pairs": 0, "instances": 0, "addresses": 0}

    assert run_cli("provision", "--region", "eu", cwd=tmp_path).returncode == 0
    status = run_cli("status", "--region", "eu", "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    rows = json.loads(status.stdout)
    assert [(r["name"], r["provider"], r["probe"]) for r in rows] == [("turn-1", "aws", None), ("turn-2", "aws", None)]
    assert all(r["public_ip"] and r["private_ip"] for r in rows)


def test_killed_mid_provision_then_rerun_converges(aws_env: str, tmp_path: Path) -> None:
    """SIGKILL the CLI right after its first instance launched; the next run adopts what exists."""
    write_config(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "turnkit", "provision", "--region", "eu"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("launched turn-1"):
            proc.kill()
            break
    proc.wait(60)
    assert proc.returncode == -signal.SIGKILL
    assert 1 <= inventory()["instances"] <= 2

    again = run_cli("provision", "--region", "eu", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert inventory() == {"security_groups": 1, "key_pairs": 1, "instances": 2, "addresses": 2}
    assert {_tag(i, TAG_NODE) for i in live_instances()} == {"turn-1", "turn-2"}

    gone = run_cli("destroy", "--region", "eu", "--yes", cwd=tmp_path)
    assert gone.returncode == 0, gone.stderr
    assert inventory() == {"security_groups": 0, "key_pairs": 0, "instances": 0, "addresses": 0}


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        ("InsufficientInstanceCapacity", "We currently do not have sufficient t3.small capacity",
         "InsufficientInstanceCapacity: AWS has no capacity for this instance type here; try another instance_type"),
        ("VcpuLimitExceeded", "You have requested more vCPU capacity than your current vCPU limit",
         "VcpuLimitExceeded: vCPU quota reached; raise it in Service Quotas"),
        ("UnauthorizedOperation", "You are not authorized to perform this operation. Encoded authorization failure message: AAAA",
         "UnauthorizedOperation: the AWS identity lacks permission for this call"),
        ("RequestLimitExceeded", "Request limit exceeded.", "RequestLimitExceeded: AWS kept throttling after retries; try again later"),
        ("InvalidParameterValue", "Value (x) for parameter groupName is invalid\nmore detail",
         "InvalidParameterValue: Value (x) for parameter groupName is invalid"),
    ],
)  # fmt: skip
def test_aws_error_codes_become_one_line(tmp_path: Path, code: str, message: str, expected: str) -> None:
    from botocore.exceptions import ClientError

    from turnkit.provision.aws import AwsProvider

    provider = AwsProvider(config_mod.load(write_config(tmp_path)), "eu")
    error = ClientError({"Error": {"Code": code, "Message": message}}, "RunInstances")
    with pytest.raises(ProvisionError) as info, provider.step("launch instance turn-1"):
        raise error
    assert str(info.value) == f"region `eu` (eu-central-1): launch instance turn-1: {expected}"
    assert info.value.code == code  # callers branch on the code, never on the message text


def test_plan_and_apply_share_one_diff_and_one_zone_lookup(aws_env: str, tmp_path: Path) -> None:
    route53 = boto3.client("route53", region_name=REGION)
    route53.create_hosted_zone(Name="example.test", CallerReference="turnkit-once")
    cfg = config_mod.load(write_config(tmp_path, 'route53_zone = "example.test"\n'))
    provider = AwsProvider(cfg, "eu")
    calls: list[dict[str, Any]] = []
    lookup = provider.route53.list_hosted_zones_by_name

    def counted(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return lookup(**kwargs)

    provider.route53.list_hosted_zones_by_name = counted
    looked: list[int] = []
    find = provider.find

    def counted_find() -> Any:
        looked.append(1)
        return find()

    provider.find = counted_find  # type: ignore[method-assign]
    assert [a.kind for a in changes(provider.plan())].count("dns-record") == 2
    provider.apply(lambda _: None)
    assert len(looked) == 1  # apply executed the diff the plan showed; it did not look again
    done = provider.destroy(lambda _: None)
    assert [a.kind for a in done].count("dns-record") == 2
    assert calls == [{"DNSName": "example.test", "MaxItems": "1"}]

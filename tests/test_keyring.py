"""The secret keyring: rotation phases, pruning, and the 0600 file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from turnkit import keyring
from turnkit.errors import SecretStoreError

T0 = 1_800_000_000
DAY = 86400


def test_init_has_one_primary() -> None:
    ring = keyring.init(T0)
    assert len(ring.secrets) == 1 and ring.primary.primary
    assert len(ring.primary.value) >= 40


def test_rotate_makes_new_primary_and_keeps_old_accepted() -> None:
    ring0 = keyring.init(T0)
    ring1 = keyring.rotate(ring0, T0 + 10)
    assert ring1.primary.id != ring0.primary.id
    assert ring1.accepted == sorted([ring1.primary.value, ring0.primary.value])
    old = ring1.get(ring0.primary.id)
    assert old.retired_at == T0 + 10 and not old.primary


def test_staged_rotation_keeps_issuing_with_old_until_promoted() -> None:
    ring0 = keyring.init(T0)
    staged = keyring.rotate(ring0, T0 + 10, stage=True)
    fresh = staged.secrets[0]
    assert staged.primary.id == ring0.primary.id
    assert fresh.staged and fresh.value in staged.accepted
    promoted = keyring.promote(staged, fresh.id, T0 + 20)
    assert promoted.primary.id == fresh.id
    assert promoted.accepted == staged.accepted  # coturn's config does not change on promote
    assert promoted.get(ring0.primary.id).retired_at == T0 + 20


def test_prune_waits_for_grace() -> None:
    ring = keyring.rotate(keyring.init(T0), T0 + 10)
    kept, dropped = keyring.prune(ring, T0 + 10 + 2 * DAY - 1, grace=2 * DAY)
    assert dropped == [] and len(kept.secrets) == 2
    kept, dropped = keyring.prune(ring, T0 + 10 + 2 * DAY, grace=2 * DAY)
    assert [s.id for s in kept.secrets] == [ring.primary.id] and len(dropped) == 1


def test_prune_never_drops_primary_or_staged() -> None:
    ring = keyring.rotate(keyring.init(T0), T0, stage=True)
    kept, dropped = keyring.prune(ring, T0 + 10 * DAY, grace=0)
    assert dropped == [] and len(kept.secrets) == 2


def test_promote_retired_or_unknown_refused() -> None:
    ring0 = keyring.init(T0)
    ring1 = keyring.rotate(ring0, T0 + 1)
    with pytest.raises(SecretStoreError, match="is retired and cannot be promoted"):
        keyring.promote(ring1, ring0.primary.id, T0 + 2)
    with pytest.raises(SecretStoreError, match="no secret with id `nope`"):
        keyring.promote(ring1, "nope", T0 + 2)


def test_save_is_0600_and_roundtrips(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    ring = keyring.rotate(keyring.init(T0), T0 + 1, stage=True)
    keyring.save(path, ring)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keyring.load(path) == ring
    assert [p.name for p in tmp_path.iterdir()] == ["k.json"]  # no temp file left behind


def test_load_refuses_group_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    keyring.save(path, keyring.init(T0))
    os.chmod(path, 0o644)
    with pytest.raises(SecretStoreError, match=r"mode 0644 is too open, expected 0600"):
        keyring.load(path)


@pytest.mark.parametrize("text", ["not json", '{"secrets": [{"id": 1}]}', '{"secrets": []}'])
def test_corrupt_keyring_is_one_line_without_values(tmp_path: Path, text: str) -> None:
    path = tmp_path / "k.json"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(SecretStoreError) as exc:
        keyring.load(path)
    assert str(exc.value).startswith(f"{path}: ") and "\n" not in str(exc.value)


def test_missing_keyring_suggests_init(tmp_path: Path) -> None:
    with pytest.raises(SecretStoreError, match=r"run `turnkit secret init`"):
        keyring.load(tmp_path / "absent.json")


def test_repr_never_shows_values() -> None:
    ring = keyring.init(T0)
    assert ring.primary.value not in repr(ring)

"""Chat pseudonyms: keyed by a secret the user or the installation holds, 64-bit, the key in no output."""

import hashlib
import hmac
import os
import stat
from pathlib import Path

import pytest
from mmapps_domains.surveillance import pseudonyms
from mmapps_domains.surveillance.pseudonyms import pseudonym

from mmapps.errors import ConfigError


def test_per_installation_key_is_created_private_and_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "cfg" / "chat.key"
    monkeypatch.setenv("MMAPPS_CHAT_PSEUDONYM_KEY_FILE", str(key_file))
    first = pseudonym("Alice")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = bytes.fromhex(key_file.read_text().strip())
    assert len(key) == 32
    # an independent oracle: HMAC-SHA256 of the normalised name, first 64 bits
    assert first == "user-" + hmac.new(key, b"alice", hashlib.sha256).hexdigest()[:16]
    assert pseudonym(" ALICE ") == first and pseudonym("bob") != first
    other = tmp_path / "other.key"
    monkeypatch.setenv("MMAPPS_CHAT_PSEUDONYM_KEY_FILE", str(other))
    assert pseudonym("Alice") != first  # another installation: other pseudonyms


def test_a_name_list_does_not_reverse_pseudonyms_without_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The old scheme (public key, 32 bits) was reversed by hashing a list of names; now the key is secret."""
    monkeypatch.setenv("MMAPPS_CHAT_PSEUDONYM_KEY", os.urandom(32).hex())
    target = pseudonym("carol")
    names = ["alice", "bob", "carol", "dave"]
    for guessed_key in (b"mmapps-surveillance-chat", b"", b"mmapps"):
        assert target not in {f"user-{hashlib.blake2b(n.encode(), key=guessed_key, digest_size=4).hexdigest()}" for n in names}
        assert target not in {"user-" + hmac.new(guessed_key, n.encode(), hashlib.sha256).hexdigest()[:16] for n in names}
    assert len(target) == len("user-") + 16  # 64 bits


def test_unsafe_or_malformed_keys_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loose = tmp_path / "loose.key"
    loose.write_text(os.urandom(32).hex())
    loose.chmod(0o644)
    monkeypatch.setenv("MMAPPS_CHAT_PSEUDONYM_KEY_FILE", str(loose))
    with pytest.raises(ConfigError, match="mode 0644.*chmod 600"):
        pseudonym("x")
    monkeypatch.setenv("MMAPPS_CHAT_PSEUDONYM_KEY", "short")
    with pytest.raises(ConfigError, match="MMAPPS_CHAT_PSEUDONYM_KEY.*32 hexadecimal"):
        pseudonym("x")


def test_the_key_reaches_no_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Train the smoke recipe on demo data whose chat names users; neither the key nor a raw name is in the run folder."""
    from mmapps_domains.surveillance.demo import write_demo_data
    from typer.testing import CliRunner

    from mmapps.cli.verbs import build_domain_app
    from mmapps.plugins import discover_domains

    key = os.urandom(32).hex()
    monkeypatch.setenv("MMAPPS_CHAT_PSEUDONYM_KEY", key)
    monkeypatch.setenv("MMAPPS_CACHE_DIR", str(tmp_path / "cache"))
    root = write_demo_data(tmp_path / "demo", n=4, seed=5)
    users = set()
    for log in list((root / "chat").glob("*.jsonl")):
        import json

        users |= {json.loads(line).get("user", "") for line in log.read_text().splitlines() if line.strip()}
    users.discard("")
    app = build_domain_app(next(e for e in discover_domains() if e.name == "surveillance"))
    result = CliRunner().invoke(app, ["train", "--recipe", "smoke", "--data", str(root), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    for folder in (tmp_path / "run", tmp_path / "cache"):
        for path in folder.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert key.encode() not in data and bytes.fromhex(key) not in data, path
                if path.suffix in (".json", ".jsonl", ".md", ".yaml", ".csv", ".log", ".txt"):
                    assert not any(u.encode() in data for u in users if len(u) > 3), path
    assert pseudonyms.pseudonym_key() == bytes.fromhex(key)

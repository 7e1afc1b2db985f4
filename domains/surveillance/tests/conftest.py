"""Shared fixtures: chat pseudonym keys live in the test's folder, never in the user's config."""

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _pseudonym_key_in_tmp(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MMAPPS_CHAT_PSEUDONYM_KEY", raising=False)
    monkeypatch.setenv("MMAPPS_CHAT_PSEUDONYM_KEY_FILE", str(Path(tmp_path_factory.getbasetemp()) / "chat-pseudonym.key"))

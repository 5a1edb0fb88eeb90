"""The CLI's glibc tuning: applied once on Linux/glibc, never against the user's own settings."""

from __future__ import annotations

import os
import platform
import sys

import pytest

from zoo import _malloc


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_malloc, "_applied", False)
    for key in list(os.environ):
        if key.startswith("MALLOC_") or key == "ZOO_MALLOC_TUNING":
            monkeypatch.delenv(key)


def test_opt_out_and_user_settings_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_MALLOC_TUNING", "0")
    assert _malloc.tune_malloc_for_training() is False
    monkeypatch.delenv("ZOO_MALLOC_TUNING")
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert _malloc.tune_malloc_for_training() is False
    assert _malloc._applied is False


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="needs glibc"
)
def test_applied_once_on_glibc() -> None:
    assert _malloc.tune_malloc_for_training() is True
    assert _malloc.tune_malloc_for_training() is False  # second call: already done

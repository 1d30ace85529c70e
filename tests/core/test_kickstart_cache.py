"""The remembered kickstart checks: reused when nothing changed, recomputed otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from homelab_images.core import kickstart_cache
from homelab_images.core.kickstart import KickstartInvalid, canonical_kickstart, validate_kickstart
from homelab_images.core.kickstart_cache import KickstartReport, cached_report
from homelab_images.core.kickstart_check import check_kickstart
from tests.rendering import plan_for


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOMELAB_IMAGES_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(kickstart_cache, "_MEMORY", {})
    return tmp_path


def test_a_text_is_checked_once_then_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = plan_for().kickstart  # rendering checks it too: start counting from a fresh cache
    empty_cache = tmp_path / "fresh"
    monkeypatch.setenv("HOMELAB_IMAGES_CACHE_DIR", str(empty_cache))
    monkeypatch.setattr(kickstart_cache, "_MEMORY", {})
    calls: list[str] = []

    def compute() -> KickstartReport:
        calls.append(text)
        return check_kickstart(text)

    first = cached_report(text, compute)
    monkeypatch.setattr(kickstart_cache, "_MEMORY", {})  # a new process: only the disk remains
    second = cached_report(text, compute)
    assert calls == [text]
    assert second == first and first.canonical and first.problems == [] and first.error is None
    assert len(list((empty_cache / "kickstart").iterdir())) == 1


def test_another_text_is_checked_again(empty_cache: Path) -> None:
    text = plan_for().kickstart
    edited = text.replace("selinux --enforcing", "selinux --permissive")
    validate_kickstart(text)
    with pytest.raises(KickstartInvalid, match="SELinux must be enforcing"):
        validate_kickstart(edited)
    assert canonical_kickstart(text) != canonical_kickstart(edited)


def test_a_damaged_cache_entry_is_recomputed(empty_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = plan_for().kickstart
    expected = canonical_kickstart(text)
    (entry,) = (empty_cache / "kickstart").iterdir()
    entry.write_text("{not json", encoding="utf-8")
    monkeypatch.setattr(kickstart_cache, "_MEMORY", {})
    assert canonical_kickstart(text) == expected


def test_a_rejected_text_is_remembered_as_rejected(empty_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(KickstartInvalid, match="line 2"):
        validate_kickstart("text\nnot-a-command --foo\n")
    monkeypatch.setattr(kickstart_cache, "_MEMORY", {})
    with pytest.raises(KickstartInvalid, match="line 2"):
        validate_kickstart("text\nnot-a-command --foo\n")


def test_an_unwritable_cache_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("", encoding="utf-8")
    monkeypatch.setenv("HOMELAB_IMAGES_CACHE_DIR", str(blocker))
    monkeypatch.setattr(kickstart_cache, "_MEMORY", {})
    validate_kickstart(plan_for().kickstart)

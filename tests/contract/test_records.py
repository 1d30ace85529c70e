"""The runner's JSON documents: the wire format others read, and one-line errors for bad input."""

from __future__ import annotations

import json

import pytest

from homelab_images.contract.build_spec import BuildSpec
from homelab_images.contract.records import RecordError
from homelab_images.contract.result import BuildResult, RetainedTemplate, SmokeResult, parse_result
from tests.rendering import plan_for


def _spec_document() -> dict[str, object]:
    return json.loads(plan_for().build_spec.to_json())


def test_spec_round_trips_through_json_with_snake_case_keys() -> None:
    spec = plan_for().build_spec
    document = json.loads(spec.to_json())
    assert document["vm_id_range"] == {"first": spec.vm_id_range.first, "last": spec.vm_id_range.last}
    assert "template_name" in document
    assert BuildSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"retain_previous": True}, "retain_previous"),  # a bool is not a count
        ({"timeout_minutes": "60"}, "timeout_minutes"),  # no coercion from strings
        ({"timeout_minutes": 0}, "timeout_minutes"),
        ({"retain_previous": -1}, "retain_previous"),
        ({"vm_id_range": {"first": 9010, "last": 9000}}, "vm_id_range"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_a_bad_spec_is_one_line_naming_the_field(change: dict[str, object], named: str) -> None:
    with pytest.raises(RecordError) as caught:
        BuildSpec.from_json(json.dumps({**_spec_document(), **change}))
    assert named in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_missing_field_is_named() -> None:
    document = _spec_document()
    del document["bridge"]
    with pytest.raises(RecordError, match="bridge"):
        BuildSpec.from_json(json.dumps(document))


def test_replace_validates_like_reading_json() -> None:
    spec = plan_for().build_spec
    assert spec.replace(node="pve2").node == "pve2"
    with pytest.raises(RecordError, match="timeout_minutes"):
        spec.replace(timeout_minutes=0)


def test_result_line_uses_the_documented_camel_case_keys() -> None:
    result = BuildResult(
        vm_id=9001,
        node="pve1",
        name="alma9-v1.0.0",
        version="1.0.0",
        fingerprint="ab" * 32,
        storage="local-lvm",
        built_at="2026-01-01T00:00:00Z",
        source_commit=None,
        retained=[RetainedTemplate(vm_id=9000, name="old", version="0.9.0", fingerprint=None, built_at=None)],
    )
    line = result.to_json()
    assert "\n" not in line
    assert json.loads(line) == {
        "vmId": 9001,
        "node": "pve1",
        "name": "alma9-v1.0.0",
        "version": "1.0.0",
        "fingerprint": "ab" * 32,
        "storage": "local-lvm",
        "builtAt": "2026-01-01T00:00:00Z",
        "sourceCommit": None,
        "retained": [
            {"vmId": 9000, "name": "old", "version": "0.9.0", "fingerprint": None, "builtAt": None, "node": None}
        ],
        "smoke": None,
    }
    assert parse_result("packer noise\n" + line + "\n") == result


def test_the_smoke_result_round_trips_and_an_older_result_has_none() -> None:
    smoke = SmokeResult(passed=True, ready_seconds=41.7, checked_at="2026-01-01T00:05:00Z")
    result = BuildResult(
        vm_id=9001, node="pve1", name="n", version="1.0.0", fingerprint="ab" * 32, storage="local-lvm",
        built_at="2026-01-01T00:00:00Z", source_commit=None, smoke=smoke,
    )  # fmt: skip
    line = result.to_json()
    assert json.loads(line)["smoke"] == {"passed": True, "readySeconds": 41.7, "checkedAt": "2026-01-01T00:05:00Z"}
    assert parse_result(line) == result
    older = json.loads(line)
    del older["smoke"]
    parsed = parse_result(json.dumps(older))
    assert parsed is not None and parsed.smoke is None


def test_a_result_with_a_string_vm_id_is_no_result() -> None:
    line = json.dumps({"vmId": "9001", "node": "pve1", "name": "n", "version": "1", "fingerprint": "f",
                       "storage": "s", "builtAt": "t", "sourceCommit": None})  # fmt: skip
    assert parse_result(line) is None

"""Every command's ``--help`` and ``--json`` output stays what users and scripts rely on."""

from __future__ import annotations

import json
from typing import Any

import pytest
from _golden import GOLDEN, capture


def contained(old: Any, new: Any, where: str = "$") -> list[str]:
    """Where ``new`` lost, changed or reordered something of ``old``: new dict keys are
    allowed anywhere, the old keys keep their order (people and scripts read the JSON as text)."""
    if isinstance(old, dict):
        if not isinstance(new, dict):
            return [f"{where}: was an object"]
        kept = [k for k in new if k in old]
        order = [] if kept == [k for k in old if k in new] else [f"{where}: keys reordered"]
        return order + [
            p
            for k, v in old.items()
            for p in (
                contained(v, new[k], f"{where}.{k}") if k in new else [f"{where}.{k}: missing"]
            )
        ]
    if isinstance(old, list):
        if not isinstance(new, list) or len(new) != len(old):
            return [f"{where}: was a list of {len(old)}"]
        return [
            p
            for i, (a, b) in enumerate(zip(old, new, strict=True))
            for p in contained(a, b, f"{where}[{i}]")
        ]
    return [] if old == new else [f"{where}: {old!r} became {new!r}"]


@pytest.fixture(scope="module")
def outputs() -> dict[str, str]:
    return capture()


@pytest.mark.parametrize("name", sorted(p.name for p in GOLDEN.iterdir()))
def test_output_is_unchanged(outputs: dict[str, str], name: str) -> None:
    old = (GOLDEN / name).read_text()
    assert name in outputs, f"{name} is no longer produced"
    if name.endswith(".json"):
        assert contained(json.loads(old), json.loads(outputs[name])) == []
    else:
        assert outputs[name] == old


def test_contained_sees_a_changed_or_missing_field() -> None:
    assert contained({"a": 1, "b": [1, 2]}, {"a": 1, "b": [1, 2], "c": 3}) == []
    assert contained({"a": 1}, {"a": 2}) == ["$.a: 1 became 2"]
    assert contained({"a": {"b": 1}}, {"a": {}}) == ["$.a.b: missing"]
    assert contained([1, 2], [1]) == ["$: was a list of 2"]
    assert contained({"a": 1, "b": 2}, {"b": 2, "c": 0, "a": 1}) == ["$: keys reordered"]
    assert contained({"a": 1, "b": 2}, {"b": 2, "c": 0, "a": 1}) == ["$: keys reordered"]

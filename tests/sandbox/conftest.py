"""Fixtures of the sandbox tests: one simple_shop sandbox per session, the spec's schemas."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest

from orchestration.settings import get_settings
from sandbox.runner import SandboxHandle, running_sandbox

SCHEMAS = Path(__file__).with_name("intercom_2.14_schemas.json")


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    # The downloaded dataset is cached across runs in the checkout's default home.
    return get_settings().cache_dir


@pytest.fixture(scope="session")
def shop(cache_dir: Path) -> Iterator[SandboxHandle]:
    with running_sandbox("simple_shop", cache_dir=cache_dir) as sb:
        yield sb


@pytest.fixture
def fresh_shop(cache_dir: Path) -> Iterator[SandboxHandle]:
    """A sandbox of its own, for tests that change state or faults."""
    with running_sandbox("simple_shop", cache_dir=cache_dir) as sb:
        yield sb


def intercom_client(sb: SandboxHandle) -> httpx.Client:
    return httpx.Client(
        base_url=sb.intercom_url,
        headers={"Authorization": f"Bearer {sb.intercom_token}", "Intercom-Version": "2.14"},
        timeout=30,
    )


def _to_json_schema(node: object) -> object:
    """OpenAPI 3.0 schema to JSON Schema: `nullable` becomes a null type, refs are local."""
    if isinstance(node, list):
        return [_to_json_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _to_json_schema(v) for k, v in node.items() if k not in ("nullable", "example")}
    if "$ref" in out:
        out["$ref"] = "#/definitions/" + out["$ref"].rsplit("/", 1)[-1]
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        if "$ref" in out:
            out = {"anyOf": [{"$ref": out["$ref"]}, {"type": "null"}]}
    return out


@pytest.fixture(scope="session")
def intercom_schema():
    spec = json.loads(SCHEMAS.read_text())["schemas"]
    definitions = {name: _to_json_schema(copy.deepcopy(s)) for name, s in spec.items()}

    def validate(instance: object, name: str) -> None:
        schema = {"$ref": f"#/definitions/{name}", "definitions": definitions}
        jsonschema.validate(instance, schema)

    return validate

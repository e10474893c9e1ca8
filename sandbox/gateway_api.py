"""Install the Gateway API HTTPRoute CRD into the sandbox's API server.

The Gateway API router of the operator writes HTTPRoute backend weights and
the load generator reads them; a bare API server does not know the resource,
so the sandbox installs a compact, valid CRD for it at start, as a cluster
administrator would install the Gateway API CRDs.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

HTTPROUTE_CRD_FILE = Path(__file__).with_name("httproute-crd.yaml")
CRD_COLLECTION_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
HTTPROUTE_GROUP_VERSION_PATH = "/apis/gateway.networking.k8s.io/v1"


def httproute_crd() -> dict[str, Any]:
    """The HTTPRoute CustomResourceDefinition shipped with the sandbox."""
    manifest: dict[str, Any] = yaml.safe_load(HTTPROUTE_CRD_FILE.read_text())
    return manifest


async def install_httproute_crd(session: aiohttp.ClientSession, api_url: str, timeout_s: float = 10.0) -> None:
    """Create the CRD (an existing one is kept) and wait until httproutes are served."""
    api_url = api_url.rstrip("/")
    async with session.post(api_url + CRD_COLLECTION_PATH, json=httproute_crd()) as reply:
        if reply.status >= 400 and reply.status != 409:
            raise RuntimeError(
                f"the API server at {api_url} refused the HTTPRoute CRD ({HTTPROUTE_CRD_FILE}): "
                f"{reply.status} {(await reply.text())[:500]}"
            )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        async with session.get(api_url + HTTPROUTE_GROUP_VERSION_PATH) as reply:
            if reply.status == 200:
                body = await reply.json(content_type=None)
                if any(r.get("name") == "httproutes" for r in body.get("resources") or []):
                    return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the API server at {api_url} did not start serving httproutes within {timeout_s:.0f}s")

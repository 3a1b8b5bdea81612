"""Read back what a viewer file embeds (the page decodes the same blocks with DecompressionStream)."""

from __future__ import annotations

import base64
import gzip
import json
import re
from typing import Any


def embedded_block(html: str, block_id: str) -> bytes:
    """The gunzipped bytes of ``<script type="text/plain" id="...">`` in a viewer file."""
    match = re.search(rf'<script type="text/plain" id="{block_id}">([^<]*)</script>', html)
    assert match, f"no {block_id} block"
    return gzip.decompress(base64.b64decode(match.group(1)))


def embedded_data(html: str) -> dict[str, Any]:
    """The viewer's records JSON with ``items`` rebuilt from its columns (as the page's ``unpack`` does)."""
    data = json.loads(embedded_block(html, "data-gz"))
    columns, texts = data["columns"], data["texts"]
    data["items"] = [{**{name: values[k] for name, values in columns.items() if name not in ("q", "p", "r")},
                      "ok": columns["ok"][k] == 1, "q": texts[columns["q"][k]], "p": texts[columns["p"][k]],
                      "r": [texts[i] for i in columns["r"][k]]} for k in range(len(columns["id"]))]
    return data

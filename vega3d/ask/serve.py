"""``vega3d serve``: the three ``ask`` operations behind a KServe custom model server.

The model loads once (``AskEngine.load``); every HTTP request is a batch whose requests of one operation share
one model call. Protocols (KServe's own REST server; gRPC off):
- v1: ``POST /v1/models/<name>:predict`` with ``{"instances": [request, ...]}`` -> ``{"predictions": [...]}``;
- Open Inference Protocol v2: ``POST /v2/models/<name>/infer`` with one BYTES input named ``request`` of shape
  [N], each element a JSON request -> one BYTES output ``result`` [N], each a JSON result.
A request is the JSON form of ``vega3d.ask.engine.AskRequest``: ``scene`` (a path on the server, under
``--scene-root`` when given) and exactly one of ``question`` / ``ground`` / ``caption_box``, optionally
``situation``, ``multiple``, ``boxes``, ``box_frame``, ``axis_alignment``; the result is what ``vega3d ask``
prints. Invalid requests get 400 naming the field (``instances[1].question: ...``), oversized ones 413 (the
body past ``--max-body-bytes``, more than ``--max-batch`` requests, text past ``MAX_TEXT`` characters); the
server keeps serving. Locally it binds 127.0.0.1 (``--host``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

V2_INPUT, V2_OUTPUT = "request", "result"
MAX_TEXT = 2000
FIELDS: dict[str, tuple[type, ...]] = {
    "scene": (str,), "question": (str,), "situation": (str,), "ground": (str,), "multiple": (bool,),
    "caption_box": (list,), "boxes": (list,), "box_frame": (str,), "axis_alignment": (list,),
}


@dataclass(frozen=True)
class Limits:
    """What one HTTP request may hold."""

    max_batch: int = 16
    max_body_bytes: int = 1 << 20
    max_boxes: int = 200
    scene_root: Path | None = None


class PayloadTooLarge(Exception):
    """Answered with HTTP 413; the message names the field."""


def _kserve():
    """Import kserve without letting its module-level argument parser read our command line."""
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        import kserve
        import kserve.model_server
    finally:
        sys.argv = argv
    return kserve


def parse_instance(obj: Any, where: str, limits: Limits):
    """One JSON request -> a validated AskRequest; InvalidInput (400) / PayloadTooLarge (413) name the field."""
    from kserve.errors import InvalidInput

    from vega3d.ask.engine import AskRequest

    if not isinstance(obj, dict):
        raise InvalidInput(f"{where}: must be an object with 'scene' and one of question / ground / caption_box")
    for name in obj:
        if name not in FIELDS:
            raise InvalidInput(f"{where}.{name}: unknown field (known: {', '.join(FIELDS)})")
    if "scene" not in obj:
        raise InvalidInput(f"{where}.scene: missing (the path of a scene on the server)")
    for name, value in obj.items():
        kinds = FIELDS[name]
        if value is not None and (not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool))):
            raise InvalidInput(f"{where}.{name}: must be {' or '.join(k.__name__ for k in kinds)}, "
                               f"got {type(value).__name__}")
        if isinstance(value, str) and len(value) > MAX_TEXT:
            raise PayloadTooLarge(f"{where}.{name}: {len(value)} characters, the limit is {MAX_TEXT}")
    if len(obj.get("boxes") or []) > limits.max_boxes:
        raise PayloadTooLarge(f"{where}.boxes: {len(obj['boxes'])} boxes, the limit is {limits.max_boxes}")
    request = AskRequest(**obj)
    try:
        request.validate()
    except ValueError as error:
        raise InvalidInput(f"{where}.{error}" if ":" in str(error).split(" ")[0] else f"{where}: {error}") from None
    scene = Path(request.scene).expanduser().resolve()
    if limits.scene_root is not None and not scene.is_relative_to(limits.scene_root.resolve()):
        raise InvalidInput(f"{where}.scene: {request.scene} is outside the served scene root {limits.scene_root}")
    return request


def _decode_v2(payload) -> tuple[list[Any], str]:
    from kserve.errors import InvalidInput

    inputs = {i.name: i for i in payload.inputs}
    if V2_INPUT not in inputs:
        raise InvalidInput(f"inputs: no input named '{V2_INPUT}' (BYTES [N], one JSON request each); "
                           f"got {sorted(inputs)}")
    tensor = inputs[V2_INPUT]
    if tensor.datatype != "BYTES":
        raise InvalidInput(f"inputs.{V2_INPUT}.datatype: must be BYTES, got {tensor.datatype}")
    items = []
    for index, raw in enumerate(tensor.data):
        try:
            items.append(json.loads(raw.decode() if isinstance(raw, bytes) else raw))
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError):
            raise InvalidInput(f"inputs.{V2_INPUT}[{index}]: not a JSON request") from None
    return items, f"inputs.{V2_INPUT}"


class AskModel:
    """Factory of the KServe model class (kserve is imported lazily, so ``vega3d --help`` stays fast)."""

    @staticmethod
    def build(name: str, load_engine: Callable[[], Any], limits: Limits):
        """A ``kserve.Model`` answering v1 and v2 requests with an engine made by ``load_engine``."""
        kserve = _kserve()
        from kserve.errors import InvalidInput

        class _Model(kserve.Model):
            def __init__(self) -> None:
                super().__init__(name)
                self.engine = None
                self.limits = limits
                self.lock = threading.Lock()  # one model call at a time

            def load(self) -> bool:
                self.engine = load_engine()
                self.ready = True
                return True

            def _answer(self, requests: list) -> list[dict]:
                with self.lock:
                    return self.engine.ask(requests)

            def _requests(self, items: Any, where: str) -> list:
                if not isinstance(items, list) or not items:
                    raise InvalidInput(f"{where}: must be a non-empty list of requests")
                if len(items) > self.limits.max_batch:
                    raise PayloadTooLarge(f"{where}: {len(items)} requests, the limit is {self.limits.max_batch}")
                requests = [parse_instance(item, f"{where}[{i}]", self.limits) for i, item in enumerate(items)]
                for index, request in enumerate(requests):  # stage here, so a bad scene names its request
                    try:
                        with self.lock:
                            self.engine.stage(request)
                    except (OSError, ValueError) as error:
                        raise InvalidInput(f"{where}[{index}].scene: {error}") from None
                return requests

            async def predict(self, payload, headers=None, response_headers=None):
                if isinstance(payload, kserve.InferRequest):
                    items, where = _decode_v2(payload)
                    results = await asyncio.to_thread(self._answer, self._requests(items, where))
                    output = kserve.InferOutput(name=V2_OUTPUT, shape=[len(results)], datatype="BYTES",
                                                data=[json.dumps(r) for r in results])
                    return kserve.InferResponse(response_id=payload.id, model_name=self.name,
                                                infer_outputs=[output])
                if not isinstance(payload, dict) or "instances" not in payload:
                    raise InvalidInput("instances: missing (v1 body is {\"instances\": [request, ...]})")
                results = await asyncio.to_thread(self._answer, self._requests(payload["instances"], "instances"))
                return {"predictions": results}

        return _Model()


class BodyLimit:
    """ASGI middleware: 413 naming ``body`` for a request body past ``max_bytes`` (declared or streamed)."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._reject(send, int(declared))
        seen = 0

        async def counting_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise PayloadTooLarge(f"body: more than {self.max_bytes} bytes, the limit (--max-body-bytes)")
            return message

        return await self.app(scope, counting_receive, send)

    async def _reject(self, send, size: int) -> None:
        body = json.dumps({"error": f"body: {size} bytes, the limit is {self.max_bytes} (--max-body-bytes)"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def run_server(model, host: str, port: int, max_body_bytes: int) -> None:
    """Serve ``model`` with KServe's REST server on ``host:port`` until SIGINT/SIGTERM."""
    kserve = _kserve()
    from fastapi.responses import JSONResponse
    from kserve.model_server import app

    async def too_large(_request, error):
        return JSONResponse(status_code=413, content={"error": str(error)})

    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_exception_handler(PayloadTooLarge, too_large)

    class _Server(kserve.ModelServer):
        async def _serve(self):
            if self._rest_server is not None:  # KServe binds 0.0.0.0; bind where we were told
                self._rest_server.config.host = host
            await super()._serve()

    _Server(http_port=port, enable_grpc=False, workers=1).start([model])

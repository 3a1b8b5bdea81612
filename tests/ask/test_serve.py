"""`vega3d serve` (a real KServe server in a subprocess on a free loopback port) answers v1 and v2 HTTP requests
as `ask` does; malformed requests get 4xx naming the field and the server keeps serving."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
import requests

from tests.ask.helpers import description_of, question_of, scene_dir
from tests.evaluation.conftest import BASELINE
from vega3d.ask.engine import AskRequest
from vega3d.evaluation import tasks
from vega3d.testing.services import free_port

SCENE = "scene0002_00"
MAX_BATCH, MAX_BODY = 4, 64 * 1024


@pytest.fixture(scope="module")
def server(checkpoint, prepared_root, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("serve_log") / "server.log"
    sets = [arg for s in BASELINE for arg in ("--set", s)]
    command = [sys.executable, "-m", "vega3d.cli", "serve", "--checkpoint", str(checkpoint), "--preset", "tiny",
               *sets, "--data-root", str(prepared_root), "--port", str(port), "--max-batch", str(MAX_BATCH),
               "--max-body-bytes", str(MAX_BODY), "--scene-root", str(prepared_root)]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if requests.get(f"{url}/v2/models/vega3d/ready", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "server not ready in 180 s:\n" + log.read_text()[-3000:]
            time.sleep(0.5)
        yield url, process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _requests(root) -> list[dict]:
    scene = str(scene_dir(root, SCENE))
    qa = next(r for r in tasks.load_records(str(root), "scanqa") if r["scene_id"] == SCENE)
    ground = next(r for r in tasks.load_records(str(root), "scanrefer") if r["scene_id"] == SCENE)
    boxes = tasks.load_proposals(str(root), "val")[f"scannet/{SCENE}"]
    return [{"scene": scene, "question": question_of(qa)},
            {"scene": scene, "ground": description_of(ground), "multiple": True, "boxes": boxes},
            {"scene": scene, "caption_box": boxes[1]}]


def _assert_same(got: list[dict], expected: list[dict]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.keys() == e.keys() and g["operation"] == e["operation"]
        assert g.get("answer") == e.get("answer") and g.get("caption") == e.get("caption")
        if e["operation"] == "ground":
            np.testing.assert_allclose(g["scores"], e["scores"], atol=1e-5)
            assert [b["aligned"] for b in g["boxes"]] == [b["aligned"] for b in e["boxes"]]
            assert g["best"]["aligned"] == e["best"]["aligned"]


def test_v1_and_v2_answer_like_ask(server, engine, prepared_root):
    url, process = server
    payload = _requests(prepared_root)
    expected = json.loads(json.dumps(engine.ask([AskRequest(**p) for p in payload])))
    assert any(e.get("answer") for e in expected)

    v1 = requests.post(f"{url}/v1/models/vega3d:predict", json={"instances": payload}, timeout=120)
    assert v1.status_code == 200, v1.text
    _assert_same(v1.json()["predictions"], expected)

    body = {"id": "q1", "inputs": [{"name": "request", "shape": [len(payload)], "datatype": "BYTES",
                                    "data": [json.dumps(p) for p in payload]}]}
    v2 = requests.post(f"{url}/v2/models/vega3d/infer", json=body, timeout=120)
    assert v2.status_code == 200, v2.text
    (output,) = v2.json()["outputs"]
    assert output["name"] == "result" and output["datatype"] == "BYTES" and output["shape"] == [len(payload)]
    assert v2.json()["id"] == "q1"
    _assert_same([json.loads(item) for item in output["data"]], expected)

    # locally the server listens on the loopback interface only
    proc = psutil.Process(process.pid)
    listening = {c.laddr for c in proc.connections(kind="inet") if c.status == psutil.CONN_LISTEN}
    assert listening and {addr.ip for addr in listening} == {"127.0.0.1"}


def test_malformed_requests_get_4xx_naming_the_field(server, prepared_root):
    url, _ = server
    scene = str(scene_dir(prepared_root, SCENE))
    v1 = f"{url}/v1/models/vega3d:predict"
    cases = [
        ({"instances": [{"question": "what is this?"}]}, 400, "instances[0].scene"),
        ({"instances": [{"scene": scene, "question": 5}]}, 400, "instances[0].question"),
        ({"instances": [{"scene": scene, "caption_box": [1, 2, "x", 1, 1, 1]}]}, 400, "caption_box"),
        ({"instances": [{"scene": scene, "ground": "x", "boxes": "all"}]}, 400, "instances[0].boxes"),
        ({"instances": [{"scene": scene, "question": "a?"}, {"scene": scene, "colour": "red", "question": "b?"}]},
         400, "instances[1].colour"),
        ({"instances": [{"scene": str(prepared_root / "scannet/posed_images/nope"), "question": "a?"}]},
         400, "instances[0].scene"),
        ({"instances": [{"scene": "/etc", "question": "a?"}]}, 400, "instances[0].scene"),
        ({"instances": [{"scene": scene}]}, 400, "question, ground, caption_box"),
        ({"requests": []}, 400, "instances"),
        ({"instances": [{"scene": scene, "question": "a?"}] * (MAX_BATCH + 1)}, 413, "instances"),
        ({"instances": [{"scene": scene, "question": "x" * (MAX_BODY + 10)}]}, 413, "body"),
    ]
    for body, status, field in cases:
        response = requests.post(v1, json=body, timeout=60)
        assert response.status_code == status, (body if len(json.dumps(body)) < 300 else field, response.text)
        assert field in response.json()["error"], response.text
    v2 = f"{url}/v2/models/vega3d/infer"
    wrong_name = {"inputs": [{"name": "query", "shape": [1], "datatype": "BYTES", "data": ["{}"]}]}
    response = requests.post(v2, json=wrong_name, timeout=60)
    assert response.status_code == 400 and "inputs" in response.json()["error"]
    not_json = {"inputs": [{"name": "request", "shape": [1], "datatype": "BYTES", "data": ["{oops"]}]}
    response = requests.post(v2, json=not_json, timeout=60)
    assert response.status_code == 400 and "inputs.request[0]" in response.json()["error"]
    # still serving
    ok = requests.post(v1, json={"instances": [{"scene": scene, "question": "what is it?"}]}, timeout=120)
    assert ok.status_code == 200 and isinstance(ok.json()["predictions"][0]["answer"], str)


def test_ask_command_prints_the_engine_answer(checkpoint, engine, prepared_root, tmp_path):
    from typer.testing import CliRunner

    from vega3d.cli import app

    request = _requests(prepared_root)[1]
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps(request["boxes"]))
    out = tmp_path / "answer.json"
    sets = [arg for s in BASELINE for arg in ("--set", s)]
    result = CliRunner().invoke(app, [
        "ask", "--scene", request["scene"], "--ground", request["ground"], "--multiple", "--boxes", str(boxes),
        "--checkpoint", str(checkpoint), "--preset", "tiny", *sets, "--data-root", str(prepared_root),
        "--output", str(out)])
    assert result.exit_code == 0, result.output
    (expected,) = json.loads(json.dumps(engine.ask([AskRequest(**request)])))
    _assert_same([json.loads(out.read_text())], [expected])
    bad = CliRunner().invoke(app, ["ask", "--scene", request["scene"], "--caption-box", "1,2,3"])
    assert bad.exit_code == 2 and "--caption-box" in bad.output

"""A one-process training world listens on loopback only (issue 16: the env:// store bound every interface)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import json, types
import psutil
import torch
from vega3d.train.launch import ensure_process_env
from vega3d.train.trainer import Trainer

ensure_process_env()
Trainer._init_distributed(types.SimpleNamespace(on_gpu=False, world_size=1, local_rank=0))
import deepspeed.comm
deepspeed.comm.init_distributed("gloo")  # what deepspeed.initialize does next
t = torch.ones(3)
torch.distributed.all_reduce(t)
listening = [c.laddr.ip for c in psutil.Process().connections(kind="tcp") if c.status == "LISTEN"]
print(json.dumps({"sum": t.tolist(), "listening": listening}))
"""


def test_single_process_world_listens_on_loopback_only() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT", "GLOO_SOCKET_IFNAME")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["sum"] == [1.0, 1.0, 1.0]
    assert result["listening"] and set(result["listening"]) <= {"127.0.0.1", "::1"}, result["listening"]

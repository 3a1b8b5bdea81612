"""Child process of the kill-and-resume test: runs one shard, SIGKILLs itself inside batch ``kill_at``.

Usage: python -m tests.evaluation.runner_child RECORDS_JSON OUT_DIR SHARD NUM_SHARDS BATCH KILL_AT (-1: never)
"""

import json
import os
import signal
import sys

from tests.evaluation.helpers import dummy_predict_batch
from vega3d.evaluation.inference import run_inference


def main() -> None:
    records_path, out_dir, shard, num_shards, batch_size, kill_at = sys.argv[1:7]
    records = json.loads(open(records_path).read())
    calls = {"n": 0}

    def predict(batch):
        calls["n"] += 1
        if calls["n"] == int(kill_at):
            os.kill(os.getpid(), signal.SIGKILL)  # dies with this batch in flight
        return dummy_predict_batch(batch)

    run_inference(records, predict, out_dir, int(shard), int(num_shards), int(batch_size), progress=False)


if __name__ == "__main__":
    main()

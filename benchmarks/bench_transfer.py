"""Staging throughput on a real S3 server: fsspec bulk get/put (``vega3d.transfers``) vs the one-by-one loop.

Starts SeaweedFS on loopback, writes ``--files`` small files (``--size`` bytes each) into a local folder, and
measures side by side in one run, files per second of:
  upload:   ``storage.upload_file`` per file (the loop staging used)  vs  ``transfers.upload_many``;
  download: ``storage.download_file`` per file                      vs  ``transfers.download_many``;
then prints the ratios (bulk / loop). Each method writes to its own prefix; every downloaded byte is checked.

    .venv/bin/python benchmarks/bench_transfer.py [--files 2000] [--size 2048] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def _timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--size", type=int, default=2048, help="bytes per file")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight for the bulk transfers")
    args = parser.parse_args()

    from vega3d import storage, transfers
    from vega3d.logs import setup_logging
    from vega3d.testing.services import seaweedfs_service

    setup_logging(-1)
    with tempfile.TemporaryDirectory(prefix="bench-transfer-") as folder, \
            seaweedfs_service(Path(folder) / "seaweedfs", bucket="bench") as s3:  # fmt: skip
        os.environ.update(s3.env())
        local = Path(folder) / "files"
        rels = [f"scene{i // 100:04d}/part{i % 100:03d}.bin" for i in range(args.files)]
        for rel in rels:
            (local / rel).parent.mkdir(parents=True, exist_ok=True)
            (local / rel).write_bytes(os.urandom(args.size))
        loop_uri, bulk_uri = s3.uri("loop"), s3.uri("bulk")
        up = {
            "loop": _timed(lambda: [storage.upload_file(local / r, storage.join(loop_uri, r)) for r in rels]),
            "bulk": _timed(lambda: transfers.upload_many([(local / r, storage.join(bulk_uri, r)) for r in rels],
                                                         concurrency=args.concurrency)),
        }  # fmt: skip
        down_loop, down_bulk = Path(folder) / "down-loop", Path(folder) / "down-bulk"
        down = {
            "loop": _timed(lambda: [storage.download_file(storage.join(loop_uri, r), down_loop / r) for r in rels]),
            "bulk": _timed(lambda: transfers.download_many([(storage.join(bulk_uri, r), down_bulk / r) for r in rels],
                                                           concurrency=args.concurrency)),
        }  # fmt: skip
        for rel in rels:
            expected = (local / rel).read_bytes()
            assert (down_loop / rel).read_bytes() == expected and (down_bulk / rel).read_bytes() == expected, rel
    print(f"{args.files} files of {args.size} B on SeaweedFS (loopback), bulk concurrency {args.concurrency}")
    for name, times in (("upload", up), ("download", down)):
        loop_rate, bulk_rate = args.files / times["loop"], args.files / times["bulk"]
        print(f"{name:<9} one-by-one {loop_rate:8.1f} files/s   bulk {bulk_rate:8.1f} files/s   "
              f"ratio {bulk_rate / loop_rate:5.1f}x")


if __name__ == "__main__":
    main()

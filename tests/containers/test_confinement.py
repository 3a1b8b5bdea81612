"""A step in a container writes nowhere but the pipeline root and its private temp dirs.

One probe component runs through the same ``kfp.local.DockerRunner`` as the pipeline (``pipelines.runners``):
as UID 10001, with a read-only root filesystem, no capabilities and no-new-privileges; it tries to write in
every place a step could reach and reports what it could.
"""

import json

import pytest
from kfp import dsl, local

from pipelines.runners import LOCAL_IMAGE, make_runner

pytestmark = pytest.mark.containers


@dsl.component(base_image=LOCAL_IMAGE, install_kfp_package=False)
def probe(pipeline_root: str, host_path: str) -> str:
    """Where this step can write, who it is, and what it can see of the host."""
    import json
    import os
    import site
    import uuid

    def writable(folder: str) -> bool:
        target = os.path.join(folder, f"probe-{uuid.uuid4().hex}")
        try:
            with open(target, "w") as handle:
                handle.write("x")
        except OSError:
            return False
        os.remove(target)
        return True

    places = ["/", "/etc", "/usr", "/opt/vega3d", site.getsitepackages()[0], "/home/vega3d", "/var/tmp",
              "/root", "/tmp", "/dev/shm", pipeline_root]
    status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
    return json.dumps({
        "uid": os.getuid(), "gid": os.getgid(),
        "writable": {place: writable(place) for place in places if os.path.isdir(place)},
        "cap_eff": status["CapEff"].strip(), "no_new_privs": status["NoNewPrivs"].strip(),
        "host_path_visible": os.path.exists(host_path),
    })


def test_a_step_writes_only_the_pipeline_root_and_its_temp_dirs(docker_client, tmp_path):
    root = tmp_path / "kfp"
    secret = tmp_path / "host-secret.txt"  # beside the pipeline root, not under it
    secret.write_text("not for steps")
    local.init(runner=make_runner("docker", root), pipeline_root=str(root), raise_on_error=True)
    report = json.loads(probe(pipeline_root=str(root), host_path=str(secret)).output)
    assert (report["uid"], report["gid"]) == (10001, 10001)
    writable = {place for place, ok in report["writable"].items() if ok}
    assert writable == {str(root), "/tmp", "/dev/shm"}, report["writable"]  # /tmp and /dev/shm: private tmpfs
    assert not report["writable"]["/home/vega3d"] and not report["writable"]["/"]
    assert report["cap_eff"] == "0000000000000000" and report["no_new_privs"] == "1"
    assert not report["host_path_visible"]  # a file beside the pipeline root is not mounted
    # the outputs the step wrote into the pipeline root belong to its user
    outputs = list(root.rglob("executor_output.json"))
    assert outputs and all(path.stat().st_uid == 10001 for path in outputs)

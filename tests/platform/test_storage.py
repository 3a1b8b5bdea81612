"""vega3d.storage: retry policy, atomic writes, and the real S3 path against SeaweedFS on loopback."""

from __future__ import annotations

import os
from pathlib import Path

import boto3
import botocore.exceptions
import pytest
from s3fs.errors import translate_boto_error

from vega3d import storage
from vega3d.testing.services import LOOPBACK, SeaweedFS, free_port


class Flaky:
    """Callable that raises the given errors in turn, then returns ``result``; counts its calls."""

    def __init__(self, errors: list[BaseException], result: object = "ok") -> None:
        self.errors = list(errors)
        self.result = result
        self.calls = 0

    def __call__(self) -> object:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.result


def client_error(code: str, status: int) -> botocore.exceptions.ClientError:
    response = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return botocore.exceptions.ClientError(response, "GetObject")


# ---------------------------------------------------------------------------------------------------- retries


def test_retries_transient_errors_with_exponential_backoff() -> None:
    flaky = Flaky([ConnectionResetError("reset"), TimeoutError("slow"), client_error("SlowDown", 503)], result=42)
    delays: list[float] = []
    assert storage.with_retries(flaky, attempts=4, base_delay=0.5, sleep=delays.append) == 42
    assert flaky.calls == 4
    assert delays == [0.5, 1.0, 2.0]


def test_retry_delay_is_capped() -> None:
    flaky = Flaky([ConnectionError()] * 4)
    delays: list[float] = []
    assert storage.with_retries(flaky, attempts=5, base_delay=1.0, max_delay=3.0, sleep=delays.append) == "ok"
    assert delays == [1.0, 2.0, 3.0, 3.0]


def test_gives_up_after_the_last_attempt_naming_the_call() -> None:
    last = TimeoutError("still slow")
    flaky = Flaky([TimeoutError("slow"), TimeoutError("slow"), last])
    delays: list[float] = []
    with pytest.raises(OSError, match=r"read s3://b/k failed after 3 attempts") as caught:
        storage.with_retries(flaky, attempts=3, base_delay=0.25, what="read s3://b/k", sleep=delays.append)
    assert caught.value.__cause__ is last
    assert flaky.calls == 3
    assert delays == [0.25, 0.5]


@pytest.mark.parametrize(
    "error",
    [
        FileNotFoundError("s3://b/missing"),
        PermissionError("denied"),
        ValueError("bad json"),
        client_error("NoSuchKey", 404),
        client_error("AccessDenied", 403),
        client_error("InvalidArgument", 400),
        translate_boto_error(client_error("NoSuchKey", 404)),
        translate_boto_error(client_error("SignatureDoesNotMatch", 403)),
    ],
    ids=lambda e: type(e).__name__ + ":" + str(e)[:30],
)
def test_permanent_errors_are_raised_at_once(error: BaseException) -> None:
    flaky = Flaky([error])
    delays: list[float] = []
    with pytest.raises(type(error)) as caught:
        storage.with_retries(flaky, sleep=delays.append)
    assert caught.value is error
    assert flaky.calls == 1
    assert delays == []


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (client_error("SlowDown", 503), True),
        (client_error("InternalError", 500), True),
        (client_error("ServiceUnavailable", 503), True),
        (client_error("Throttling", 400), True),
        (client_error("TooManyRequests", 429), True),
        (client_error("RequestTimeout", 400), True),
        (client_error("NoSuchBucket", 404), False),
        # s3fs turns ClientError into OSError(EBUSY / EIO) with the ClientError as cause
        (translate_boto_error(client_error("SlowDown", 503)), True),
        (translate_boto_error(client_error("InternalError", 500)), True),
        (translate_boto_error(client_error("InvalidRange", 416)), False),
        (botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), True),
        (botocore.exceptions.ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), True),
        (botocore.exceptions.NoCredentialsError(), False),
        (OSError(5, "plain I/O error"), False),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, bool) else str(v),
)
def test_is_transient_classifies_library_errors(error: BaseException, transient: bool) -> None:
    assert storage.is_transient(error) is transient


def test_a_refused_s3_connection_is_transient() -> None:
    """The exception s3fs really raises when nothing listens at the endpoint is classified as retryable."""
    import s3fs

    fs = s3fs.S3FileSystem(
        endpoint_url=f"http://{LOOPBACK}:{free_port()}", key="k", secret="s",
        config_kwargs={"retries": {"max_attempts": 1}, "connect_timeout": 1}, skip_instance_cache=True,
    )  # fmt: skip
    fs.retries = 1  # s3fs's own retry loop; ours is what is under test
    with pytest.raises(botocore.exceptions.EndpointConnectionError) as caught:
        fs.cat_file("bucket/key")
    assert storage.is_transient(caught.value)


def test_s3_options_come_from_the_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1111")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:2222")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AK")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SK")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    assert storage.s3_options() == {
        "use_listings_cache": False,
        "endpoint_url": "http://127.0.0.1:2222",  # the S3-specific variable wins
        "key": "AK",
        "secret": "SK",
        "client_kwargs": {"region_name": "eu-west-3"},
    }
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    assert storage.s3_options()["endpoint_url"] == "http://127.0.0.1:1111"


# ------------------------------------------------------------------------------------------- atomic local


def test_failed_local_write_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out" / "ckpt.bin"
    with pytest.raises(RuntimeError, match="crash"):
        with storage.atomic_output(str(target)) as tmp:
            Path(tmp).write_bytes(b"half")
            raise RuntimeError("crash mid-write")
    assert not target.exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_failed_local_overwrite_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    storage.write_json(str(target), {"acc": 0.5})
    with pytest.raises(RuntimeError):
        with storage.atomic_local_path(target) as tmp:
            Path(tmp).write_text('{"acc": 0.')
            raise RuntimeError("crash")
    assert storage.read_json(str(target)) == {"acc": 0.5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_local_write_replaces_and_reads_back(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b.txt"
    storage.write_text(str(target), "first")
    storage.write_text(str(target), "second")
    assert storage.read_text(str(target)) == "second"
    assert storage.listdir(str(tmp_path / "a")) == ["b.txt"]


def test_read_json_names_the_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json: not valid JSON"):
        storage.read_json(str(bad))


# --------------------------------------------------------------------------------- real S3 (SeaweedFS)


def _boto(server: SeaweedFS):
    return boto3.client(
        "s3", endpoint_url=server.endpoint, aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key, region_name="us-east-1",
    )  # fmt: skip


def _keys(server: SeaweedFS, prefix_uri: str) -> list[str]:
    prefix = prefix_uri.split("/", 3)[3]
    listing = _boto(server).list_objects_v2(Bucket=server.bucket, Prefix=prefix)
    return sorted(obj["Key"][len(prefix) + 1 :] for obj in listing.get("Contents", []))


@pytest.mark.integration
def test_s3_round_trip_is_visible_to_an_independent_client(s3_env: SeaweedFS, s3_prefix: str) -> None:
    uri = storage.join(s3_prefix, "run", "metrics.json")
    storage.write_json(uri, {"acc@0.25": 0.375, "scenes": ["scene0000_00"]})
    raw = _boto(s3_env).get_object(Bucket=s3_env.bucket, Key=uri.split("/", 3)[3])["Body"].read()
    assert raw == b'{"acc@0.25": 0.375, "scenes": ["scene0000_00"]}'
    assert storage.read_json(uri) == {"acc@0.25": 0.375, "scenes": ["scene0000_00"]}
    storage.write_bytes(storage.join(s3_prefix, "run", "blob.bin"), bytes(range(256)))
    assert storage.exists(uri)
    assert storage.listdir(storage.join(s3_prefix, "run")) == ["blob.bin", "metrics.json"]
    assert storage.read_bytes(storage.join(s3_prefix, "run", "blob.bin")) == bytes(range(256))
    storage.remove(storage.join(s3_prefix, "run"), recursive=True)
    assert not storage.exists(uri)
    assert _keys(s3_env, s3_prefix) == []


@pytest.mark.integration
def test_s3_missing_object_is_not_retried(s3_env: SeaweedFS, s3_prefix: str) -> None:
    fs, path = storage.filesystem(storage.join(s3_prefix, "missing.json"))
    calls, delays = [], []

    def read() -> bytes:
        calls.append(1)
        return fs.cat_file(path)

    with pytest.raises(FileNotFoundError):
        storage.with_retries(read, sleep=delays.append)
    assert (len(calls), delays) == (1, [])


@pytest.mark.integration
def test_s3_wrong_secret_is_permanent(s3_env: SeaweedFS, s3_prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    storage.write_text(storage.join(s3_prefix, "secret.txt"), "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    delays: list[float] = []
    fs, path = storage.filesystem(storage.join(s3_prefix, "secret.txt"))
    with pytest.raises(PermissionError):
        storage.with_retries(lambda: fs.cat_file(path), sleep=delays.append)
    assert delays == []


@pytest.mark.integration
def test_s3_failed_atomic_output_leaves_no_object(s3_env: SeaweedFS, s3_prefix: str) -> None:
    uri = storage.join(s3_prefix, "ckpt", "model.safetensors")
    with pytest.raises(RuntimeError, match="killed"):
        with storage.atomic_output(uri) as tmp:
            Path(tmp).write_bytes(b"\0" * 1024)
            raise RuntimeError("killed while writing")
    assert not storage.exists(uri)
    assert _keys(s3_env, s3_prefix) == []
    with storage.atomic_output(uri) as tmp:
        Path(tmp).write_bytes(b"\1" * 1024)
    assert _keys(s3_env, s3_prefix) == ["ckpt/model.safetensors"]
    assert storage.read_bytes(uri) == b"\1" * 1024


@pytest.mark.integration
def test_s3_upload_and_download_a_multi_megabyte_file(s3_env: SeaweedFS, s3_prefix: str, tmp_path: Path) -> None:
    payload = os.urandom(6 * 2**20 + 123)  # above weed's 4 MB chunk size
    local = tmp_path / "weights.bin"
    local.write_bytes(payload)
    uri = storage.join(s3_prefix, "weights.bin")
    storage.upload_file(local, uri)
    back = tmp_path / "down" / "weights.bin"
    storage.download_file(uri, back)
    assert back.read_bytes() == payload
    assert sorted(p.name for p in back.parent.iterdir()) == ["weights.bin"]


@pytest.mark.integration
def test_s3_unfinished_multipart_upload_is_invisible(s3_env: SeaweedFS, s3_prefix: str) -> None:
    """What atomic uploads of large files rely on: parts are not an object until the upload completes."""
    client = _boto(s3_env)
    key = storage.join(s3_prefix, "big.bin").split("/", 3)[3]
    upload = client.create_multipart_upload(Bucket=s3_env.bucket, Key=key)
    part = client.upload_part(Bucket=s3_env.bucket, Key=key, PartNumber=1, UploadId=upload["UploadId"],
                              Body=b"\7" * (5 * 2**20))  # fmt: skip
    assert not storage.exists(storage.join(s3_prefix, "big.bin"))
    assert _keys(s3_env, s3_prefix) == []
    client.complete_multipart_upload(
        Bucket=s3_env.bucket, Key=key, UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )  # fmt: skip
    assert storage.read_bytes(storage.join(s3_prefix, "big.bin")) == b"\7" * (5 * 2**20)

"""A real S3-compatible server for the registry tests: moto's server mode on 127.0.0.1."""

from __future__ import annotations

import pytest

BUCKET = "pipeline"


@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto S3 server on 127.0.0.1, with credentials and endpoint in the environment (so child
    processes reach it too); skipped when the dev extra (moto[server], s3fs) is missing."""
    pytest.importorskip("s3fs", reason="the s3 extra (s3fs) is not installed")
    moto_server = pytest.importorskip("moto.server", reason="the dev extra (moto[server]) is not installed")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with pytest.MonkeyPatch.context() as env:
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,  # read by botocore, so by s3fs in every process
        }.items():
            env.setenv(key, value)
        import s3fs

        s3fs.S3FileSystem(skip_instance_cache=True).mkdir(BUCKET)
        yield endpoint
    server.stop()

"""service/server.py: the gateway process re-reads its model repository on SIGHUP."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import grpc
from support.gateway_fakes import write_onnx_repository

from stylegate.ops.triton_local import free_port
from stylegate.service.client import StylegateClient


def _wait(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except grpc.RpcError:
            pass
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_sighup_reloads_the_model_repository(tmp_path):
    write_onnx_repository(tmp_path)
    port = free_port()
    env = {**os.environ, "STYLEGATE_METRICS_PORT": "0", "STYLEGATE_LOG_JSON": "false"}
    argv = [sys.executable, "-c", "from stylegate.cli.main import main; main()", "serve"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--model-repository", str(tmp_path)]
    argv += ["--intra-op-threads", "1"]
    gateway = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        with StylegateClient(f"127.0.0.1:{port}", timeout=5) as c:

            def names():
                return {m.name for m in c.list_models().models}

            assert _wait(names) == {"base", "blend"}
            shutil.copytree(tmp_path / "blend_synthesis", tmp_path / "night_synthesis")
            meta = json.loads((tmp_path / "stylegate.json").read_text())
            meta["generators"]["night"] = dict(
                meta["generators"]["blend"],
                models={"mapping": "mapping", "synthesis": "night_synthesis"},
            )
            (tmp_path / "stylegate.json").write_text(json.dumps(meta))
            gateway.send_signal(signal.SIGHUP)
            _wait(lambda: "night" in names(), timeout=30)
            assert len(c.generate([1], model="night")) == 1
            # a broken repository on SIGHUP: logged, the gateway keeps serving the last one
            (tmp_path / "stylegate.json").write_text("{")
            gateway.send_signal(signal.SIGHUP)
            time.sleep(1.0)
            assert gateway.poll() is None and "night" in names()
    finally:
        gateway.send_signal(signal.SIGTERM)
        out, _ = gateway.communicate(timeout=60)
    assert gateway.returncode == 0, out.decode()[-2000:]
    assert b"reload failed" in out

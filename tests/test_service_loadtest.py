"""`stylegate loadtest` run as a user runs it (a subprocess) against a real gateway on a
loopback port serving the tiny repository, with the gateway's metrics on their own port."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from support.gateway_harness import running_gateway

from stylegate.service.metadata import load_repository

STYLEGATE = Path(sys.executable).parent / "stylegate"
RUN_KEYS = {"scenario", "concurrency", "throughput", "p50", "p95", "p99", "max", "errors"}


@pytest.fixture(scope="module")
def gateway(tiny_repository):
    """A gateway plus a Prometheus endpoint of this process' registry (where its
    micro-batcher records), as ``stylegate serve --metrics-port`` would serve it."""
    from prometheus_client import start_http_server

    httpd, _ = start_http_server(0, addr="127.0.0.1")
    try:
        # no health probing: nothing but the load test's requests reaches the backend
        with running_gateway(load_repository(tiny_repository), health_interval_s=0) as gw:
            gw.metrics = f"127.0.0.1:{httpd.server_port}"
            yield gw
    finally:
        httpd.shutdown()
        httpd.server_close()


def loadtest(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(STYLEGATE), "loadtest", *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def check_run(run: dict) -> None:
    assert RUN_KEYS <= set(run)
    assert run["errors"] == {}
    assert run["ok"] == run["requests"] > 0
    assert run["throughput"] > 0
    assert 0 < run["p50"] <= run["p95"] <= run["p99"] <= run["max"]


def test_generate_sweep_reports_json_batches_and_a_png(gateway, tmp_path):
    out = loadtest(
        "--server", gateway.address,
        "--metrics", gateway.metrics,
        "--scenario", "generate",
        "--concurrency", "1,4",
        "--duration", "1.5",
        "--json", str(tmp_path / "report.json"),
        "--plot", str(tmp_path / "report.png"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert [r["concurrency"] for r in report["runs"]] == [1, 4]
    for run in report["runs"]:
        assert run["scenario"] == "generate"
        check_run(run)
        # the batches this run made: one image per Generate, each rendered exactly once
        synthesis = run["batch_sizes"]["synthesis"]
        assert round(synthesis["mean"] * synthesis["runs"]) == run["requests"]
        assert sum(synthesis["sizes"].values()) == synthesis["runs"]
    # one request in flight at a time: the micro-batcher had nothing to merge
    assert report["runs"][0]["batch_sizes"]["synthesis"]["sizes"] == {
        "1": report["runs"][0]["requests"]
    }
    png = tmp_path / "report.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > image.height > 100
    lines = out.stdout.splitlines()
    assert sum(line.startswith("generate ") for line in lines) == 2
    assert any(line.startswith("  batches synthesis:") for line in lines)
    assert "generate c=4" in out.stderr  # the progress line
    assert "Traceback" not in out.stderr


def test_open_loop_mix_sends_every_scheduled_request(gateway, tmp_path):
    out = loadtest(
        "--server", gateway.address,
        "--metrics", gateway.metrics,
        "--scenario", "mix",
        "--rate", "20",
        "--duration", "1.5",
        "--concurrency", "4",
        "--steps", "2",
        "--images", "2",
        "--json", str(tmp_path / "mix.json"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    (run,) = json.loads((tmp_path / "mix.json").read_text())["runs"]
    check_run(run)
    assert run["scenario"] == "mix" and run["rate"] == 20
    # open loop: request i is scheduled at i / rate, so 1.5 s at 20/s is 30 requests,
    # however fast or slow the gateway answers
    assert run["requests"] == 30
    assert set(run["by_scenario"]) == {"generate", "invert", "edit", "batch"}
    assert sum(r["requests"] for r in run["by_scenario"].values()) == 30
    # the inversions went through the inversion graph
    assert run["batch_sizes"]["inversion_step"]["runs"] > 0


def test_request_count_bounds_a_run_without_metrics(gateway, tmp_path):
    out = loadtest(
        "--server", gateway.address,
        "--metrics", "off",
        "--scenario", "edit",
        "--requests", "3",
        "--concurrency", "2",
        "--steps", "2",
        "--json", str(tmp_path / "edit.json"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    (run,) = json.loads((tmp_path / "edit.json").read_text())["runs"]
    check_run(run)
    assert run["requests"] == 3 and run["duration"] is None
    assert run["batch_sizes"] is None


def test_token_is_sent_and_refusals_are_counted_by_status_code(tiny_repository, tmp_path):
    access = tmp_path / "access"
    access.write_text("alice token:s3cret-for-loadtest interactive\n")
    (tmp_path / "token").write_text("s3cret-for-loadtest\n")
    common = ["--metrics", "off", "--requests", "2", "--token-file", str(tmp_path / "token")]
    info = load_repository(tiny_repository)
    with running_gateway(info, health_interval_s=0, auth_file=str(access)) as gw:
        ok = loadtest("--server", gw.address, *common, "--json", str(tmp_path / "ok.json"))
        # alice may not run bulk work: every BatchGenerate is refused, and counted
        refused = loadtest(
            "--server", gw.address, *common, "--scenario", "batch",
            "--json", str(tmp_path / "refused.json"),
        )  # fmt: skip
        anonymous = loadtest("--server", gw.address, "--metrics", "off", "--requests", "1")
    assert ok.returncode == 0, ok.stderr
    check_run(json.loads((tmp_path / "ok.json").read_text())["runs"][0])
    assert refused.returncode == 0, refused.stderr
    (run,) = json.loads((tmp_path / "refused.json").read_text())["runs"]
    assert run["errors"] == {"PERMISSION_DENIED": 2}
    assert run["ok"] == 0 and run["p50"] is None and run["throughput"] == 0
    assert "PERMISSION_DENIED 2" in refused.stdout
    assert anonymous.returncode == 1
    (line,) = anonymous.stderr.strip().splitlines()
    assert line.startswith("Error: ") and "UNAUTHENTICATED" in line


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--server", "nohost"], "is not HOST:PORT"),
        (["--scenario", "stress"], "unknown scenario 'stress'"),
        (["--concurrency", "4,x"], "--concurrency"),
        (["--mix", "generate=1,upload=2"], "unknown scenario 'upload'"),
        (["--model", "nope"], "NOT_FOUND"),
        (["--server", "CLOSED", "--connect-timeout", "0.5"], "cannot reach a gateway"),
    ],
)
def test_a_users_mistake_is_one_line(gateway, args, message):
    args = [a.replace("CLOSED", f"127.0.0.1:{_closed_port()}") for a in args]
    if "--server" not in args:
        args += ["--server", gateway.address]
    out = loadtest(*args, "--requests", "1", "--metrics", "off")
    assert out.returncode == 1
    assert out.stdout == ""
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("Error: ") and message in line


def test_loadtest_does_not_import_torch():
    code = (
        "import sys, stylegate.service.loadtest; "
        "sys.exit('torch' in sys.modules or 'stylegate.service.server' in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)

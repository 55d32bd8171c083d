"""k8s/bulk: the Indexed Job that splits `stylegate batch` over its completions renders,
validates against the Kubernetes schemas, points at the gateway Service over TLS, and its
own command lines, run as local processes (one per completion index, all at once, like
the Job's parallelism), write exactly the files of a one-process run, byte for byte.

What the local run changes in the manifest's container, and nothing else:
- each volume mount's path becomes a folder under tmp_path (in argv and env values), the
  TLS Secret's ca.crt and the input images are put where the pods would find them;
- STYLEGATE_SERVER: the Service's DNS name becomes the loopback address of a gateway
  serving TLS with a certificate of that CA (tiny models, max_batch 1: byte-identical
  latents need each inversion alone in its micro-batch, see service/bulk.py);
- JOB_COMPLETION_INDEX is set per completion, as the Job controller does;
- the job's size: --steps 5 and --chunk-size 2 instead of the manifest's values, so ten
  images make five chunks over the four completions in a few seconds;
- the one-process run is the same command line with --shard-count=1.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import kubernetes_validate.utils
import numpy as np
import pytest
import yaml
from PIL import Image
from support.gateway_harness import running_gateway
from support.k8s_manifests import (
    K8S,
    _render_text,
    container_argv,
    env,
    find,
    flag_values,
    one,
    pod_template,
    project_image_target,
    render,
)
from support.pki import CA

from stylegate.service.metadata import load_repository

kubernetes_validate.utils.schema_contents = functools.lru_cache(maxsize=None)(
    kubernetes_validate.utils.schema_contents
)
K8S_VERSIONS = ("1.29", kubernetes_validate.latest_version())
STYLEGATE = [sys.executable, "-c", "from stylegate.cli.main import main; main()"]
SIZE = {"steps": "5", "chunk-size": "2"}
IMAGES = 10


def files(root: Path) -> dict[str, bytes]:
    """The job's files under ``root``: everything but dot-files (locks, staging)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


@functools.cache
def bulk_objects() -> tuple[dict, ...]:
    return tuple(d for d in yaml.safe_load_all(_render_text(str(K8S / "bulk"))) if d)


def bulk_job() -> tuple[dict, dict]:
    job = one(list(bulk_objects()), "Job", "stylegate-bulk")
    (c,) = pod_template(job)["spec"]["containers"]
    return job, c


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_bulk_objects_validate_against_kubernetes_schemas(version):
    kinds = sorted(o["kind"] for o in bulk_objects())
    assert kinds == ["Job", "PersistentVolumeClaim"]
    for o in bulk_objects():
        assert o["metadata"]["namespace"] == "stylegate"
        kubernetes_validate.validate(o, version, strict=True)


def test_bulk_job_is_indexed_shards_match_and_reaches_the_gateway_service():
    job, c = bulk_job()
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert 1 <= spec["parallelism"] <= spec["completions"]
    argv = container_argv(c)
    assert argv[:2] == ["stylegate", "batch"]
    flags = flag_values(argv[2:])
    assert int(flags["shard-count"]) == spec["completions"], "one shard per completion"
    assert "shard" not in flags  # the index comes from $JOB_COMPLETION_INDEX
    assert set(SIZE) <= set(flags), "the local run's substitutions must replace real flags"
    assert project_image_target(c["image"]) == "gateway"  # the image that has the CLI
    # the gateway Service, its gRPC port, and the CA of the gateway's TLS Secret
    base = render("cpu")
    host, port = env(c)["STYLEGATE_SERVER"].split(":")
    service = one(base, "Service", host)
    assert int(port) in [p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc"]
    gateway = one(base, "Deployment", "stylegate-gateway")
    secrets = {
        v["secret"]["secretName"] for v in pod_template(gateway)["spec"]["volumes"] if "secret" in v
    }
    volumes = {v["name"]: v for v in pod_template(job)["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    directory, file = env(c)["STYLEGATE_TLS_CA"].rsplit("/", 1)
    assert volumes[mounts[directory]["name"]]["secret"]["secretName"] in secrets
    assert file == "ca.crt"
    # inputs and outputs on the shared claim, which every node can mount
    (claim,) = find(list(bulk_objects()), "PersistentVolumeClaim")
    for flag in ("images", "out"):
        (mount,) = [m for m in mounts if flags[flag].startswith(m + "/")]
        assert (
            volumes[mounts[mount]["name"]]["persistentVolumeClaim"]["claimName"]
            == (claim["metadata"]["name"])
        )
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    # the pod may write nowhere else (read-only root), and runs as the image's user
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod_template(job)["spec"]["securityContext"]["runAsNonRoot"] is True


def _local(c: dict, root: Path, address: str, index: int, count: int | None = None):
    """(argv, env) of completion ``index`` run here (the substitutions of the docstring)."""
    mounts = sorted((m["mountPath"] for m in c["volumeMounts"]), key=len, reverse=True)

    def local(value: str) -> str:
        for m in mounts:
            for prefix in ("", "="):
                if (prefix + m + "/") in value or value.endswith(prefix + m):
                    return value.replace(prefix + m, prefix + str(root / m.lstrip("/")), 1)
        return value

    argv = [local(a) for a in container_argv(c)]
    for name, value in SIZE.items():
        argv = [f"--{name}={value}" if a.startswith(f"--{name}=") else a for a in argv]
    if count is not None:
        argv = [f"--shard-count={count}" if a.startswith("--shard-count=") else a for a in argv]
    variables = {k: v for k, v in os.environ.items() if not k.startswith("STYLEGATE_")}
    variables |= {k: local(v) for k, v in env(c).items()}
    variables["STYLEGATE_SERVER"] = address
    variables["JOB_COMPLETION_INDEX"] = str(index)
    assert argv[0] == "stylegate"
    return [*STYLEGATE, *argv[1:]], variables


def test_completions_of_the_indexed_job_union_to_a_one_process_run(tiny_repository, tmp_path):
    job, c = bulk_job()
    completions = job["spec"]["completions"]
    flags = flag_values(container_argv(c)[2:])
    ca = CA(tmp_path, "ca")
    cert, key = ca.issue("stylegate-gateway", server=True)  # also valid for 127.0.0.1

    def volume(root: Path) -> None:
        """What the cluster provides: the Secret's ca.crt and the images on the claim."""
        tls = root / env(c)["STYLEGATE_TLS_CA"].lstrip("/")
        tls.parent.mkdir(parents=True)
        tls.write_bytes(Path(ca.path).read_bytes())
        images = root / flags["images"].lstrip("/")
        images.mkdir(parents=True)
        rng = np.random.default_rng(11)
        for i in range(IMAGES):
            pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(images / f"img{i:03d}.png")
        (root / "tmp").mkdir()

    sharded, single = tmp_path / "sharded", tmp_path / "single"
    volume(sharded)
    volume(single)
    repository = load_repository(tiny_repository)
    with running_gateway(repository, max_batch=1, tls_cert=cert, tls_key=key) as gw:
        pods = []
        for index in range(completions):
            argv, variables = _local(c, sharded, gw.address, index)
            pods.append(
                subprocess.Popen(
                    argv, env=variables, stdout=subprocess.PIPE, stderr=subprocess.PIPE
                )
            )
        argv, variables = _local(c, single, gw.address, 0, count=1)
        one_run = subprocess.run(argv, env=variables, capture_output=True, timeout=300, check=False)
        outputs = [p.communicate(timeout=300) for p in pods]
    for pod, (stdout, stderr) in zip(pods, outputs):
        assert pod.returncode == 0, stderr.decode()
    assert one_run.returncode == 0, one_run.stderr.decode()
    assert b"wrote 10 items" in one_run.stdout
    # five chunks of two over four completions: completion 0 took chunks 0 and 4
    assert b"wrote 4 items of shard 0/4" in outputs[0][0]
    assert b"wrote 2 items of shard 3/4" in outputs[3][0]
    out = flags["out"].lstrip("/")
    union, alone = files(sharded / out), files(single / out)
    assert len([n for n in alone if n.endswith(".png")]) == IMAGES * 2  # and one edit each
    assert len([n for n in alone if n.startswith("latents/")]) == 5
    assert union.keys() == alone.keys()
    assert [n for n in union if union[n] != alone[n]] == []

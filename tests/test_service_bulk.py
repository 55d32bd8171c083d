"""`stylegate batch` bulk jobs against a real gateway (tiny models, loopback): outputs are
complete and byte-for-byte reproducible, a run killed (SIGKILL) or stopped (Ctrl-C) midway
resumes to exactly the files of an uninterrupted run without redoing finished items, a
second process on the same output is refused in one line while another shard shares it,
and a user's mistakes are one line each.

The inversion gateway runs with ``max_batch`` 1: the gateway's batched inversion step is
not batch-invariant in the last float bits (service/bulk.py, "Determinism"), and these
tests compare latents byte for byte across runs whose inversions overlap differently.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from support.gateway_harness import running_gateway

from stylegate.service.cli import batch
from stylegate.service.metadata import load_repository

STYLEGATE = [sys.executable, "-c", "from stylegate.cli.main import main; main()"]
FACES = 12
CHUNK = 4
STEPS = 40  # ~0.2 s an inversion on the tiny models: a run lasts long enough to stop it


@pytest.fixture(scope="module")
def gateway(tiny_repository):
    with running_gateway(load_repository(tiny_repository), max_batch=1) as gw:
        yield gw


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(3)
    for i in range(FACES):
        pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"face{i:02d}.png")
    (folder / "notes.txt").write_text("not an image: skipped")
    return folder


def _args(gateway, faces: Path, out: Path, *extra: str) -> list[str]:
    return [
        "batch", "--server", gateway.address, "--images", str(faces), "--out", str(out),
        "--steps", str(STEPS), "--chunk-size", str(CHUNK), "--edit", "smile=2", *extra,
    ]  # fmt: skip


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("STYLEGATE_", "JOB_"))}


def _run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*STYLEGATE, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
    )


def _start(args: list[str]) -> subprocess.Popen:
    # Ctrl-C is never ignored at a terminal, but a child inherits an ignored SIGINT from its
    # parent, and a shell without job control starts background commands with SIGINT
    # ignored: CI runs the suite that way, so the job never turned SIGINT into
    # KeyboardInterrupt. A caught signal is reset to its default across exec.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(
            [*STYLEGATE, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
    finally:
        signal.signal(signal.SIGINT, previous)


def files(root: Path) -> dict[str, bytes]:
    """The job's files: everything but dot-files (locks, staging, partial writes)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 60, every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the run ended first: {proc.communicate()}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(every)


def _committed(out: Path) -> list[Path]:
    """Items committed so far: in a complete chunk, or staged in an open one."""
    staged = list((out / ".pending").glob("*/*.npz"))
    done = list((out / "manifest").glob("*.json")) if (out / "manifest").is_dir() else []
    return staged + done


@pytest.fixture(scope="module")
def reference(gateway, faces, tmp_path_factory) -> dict[str, bytes]:
    """An uninterrupted run, at concurrency 2."""
    out = tmp_path_factory.mktemp("reference")
    run = _run(_args(gateway, faces, out, "--concurrency", "2"))
    assert run.returncode == 0, run.stderr
    assert f"wrote {FACES} items to {out}" in run.stdout
    # no terminal (a pipe here, a pod's log in a Job): progress as plain lines, the last
    assert run.stderr.splitlines()[-1] == f"batch: {FACES} of {FACES} items done"
    return files(out)


def test_outputs_are_complete_consistent_and_reproducible(gateway, faces, reference, tmp_path):
    chunks = -(-FACES // CHUNK)
    names = {f"face{i:02d}{s}.png" for i in range(FACES) for s in ("", ".smile+2")}
    expected = {"job.json"} | names
    expected |= {f"latents/chunk-{c:05d}.npz" for c in range(chunks)}
    expected |= {f"manifest/chunk-{c:05d}.json" for c in range(chunks)}
    assert set(reference) == expected
    job = json.loads(reference["job.json"])
    assert job["kind"] == "invert" and job["inputs"]["items"] == FACES
    assert job["options"]["steps"] == STEPS and job["chunks"] == chunks
    assert job["options"]["optimizer"] == "lbfgs"  # the default, pinned for reruns
    for c in range(chunks):
        manifest = json.loads(reference[f"manifest/chunk-{c:05d}.json"])
        ids = [e["id"] for e in manifest["items"]]
        assert ids == [f"face{i:02d}" for i in range(c * CHUNK, min((c + 1) * CHUNK, FACES))]
        latents = reference[f"latents/chunk-{c:05d}.npz"]
        assert manifest["latents"]["sha256"] == hashlib.sha256(latents).hexdigest()
        npz = np.load(io.BytesIO(latents), allow_pickle=False)
        assert npz["ids"].tolist() == ids and npz["ws"].shape == (len(ids), 6, 32)
        assert np.isfinite(npz["ws"]).all()
        for e in manifest["items"]:
            assert e["steps"] == STEPS and e["method"] == "in_domain"
            assert e["optimizer"] == "lbfgs"
            assert 0 < e["quality"]["psnr"] < 100
            for name, digest in e["files"].items():
                assert hashlib.sha256(reference[name]).hexdigest() == digest
                assert Image.open(io.BytesIO(reference[name])).size == (16, 16)
    # the edit changed the image; another run, one inversion at a time, is byte-identical
    assert reference["face00.png"] != reference["face00.smile+2.png"]
    again = _run(_args(gateway, faces, tmp_path / "again", "--concurrency", "1"))
    assert again.returncode == 0, again.stderr
    assert files(tmp_path / "again") == reference
    # a finished job is left alone
    rerun = _run(_args(gateway, faces, tmp_path / "again"))
    assert rerun.returncode == 0 and "already done" in rerun.stdout


def test_killed_midway_restart_gives_exactly_the_uninterrupted_files(
    gateway, faces, reference, tmp_path
):
    out = tmp_path / "out"
    proc = _start(_args(gateway, faces, out, "--concurrency", "1"))
    _wait_for(lambda: (out / "manifest" / "chunk-00000.json").exists(), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert not (out / "manifest" / f"chunk-{(FACES - 1) // CHUNK:05d}.json").exists()
    # what was committed before the kill must not be redone: same inode, same mtime
    kept = {}
    for e in json.loads((out / "manifest" / "chunk-00000.json").read_text())["items"]:
        for name in e["files"]:
            st = (out / name).stat()
            kept[name] = (st.st_ino, st.st_mtime_ns)
    assert len(kept) == 2 * CHUNK
    # as if killed between a chunk's manifest and the removal of its staging
    (out / ".pending" / "chunk-00000").mkdir(parents=True, exist_ok=True)
    (out / ".pending" / "chunk-00000" / "face00.npz").write_bytes(b"stale")
    resumed = _run(_args(gateway, faces, out, "--concurrency", "2"))
    assert resumed.returncode == 0, resumed.stderr
    assert "done before" in resumed.stdout
    assert files(out) == reference
    for name, stamp in kept.items():
        st = (out / name).stat()
        assert (st.st_ino, st.st_mtime_ns) == stamp, f"{name} was redone"
    assert not list(out.rglob("*.partial")) and not list((out / ".pending").iterdir())


def test_ctrl_c_stops_cleanly_and_the_rerun_resumes(gateway, faces, reference, tmp_path):
    out = tmp_path / "out"
    proc = _start(_args(gateway, faces, out, "--concurrency", "2"))
    # stop it early: a full CI run once saw all the items end before the signal landed
    _wait_for(lambda: len(_committed(out)) >= 1, proc, every=0.005)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert time.monotonic() - started < 10  # in-flight inversions are cancelled, not awaited
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted: ") and "run the same command again to resume" in last
    done = int(last.split()[1])
    assert 1 <= done < FACES
    resumed = _run(_args(gateway, faces, out))
    assert resumed.returncode == 0, resumed.stderr
    assert f"({done} done before)" in resumed.stdout
    assert files(out) == reference


def test_a_second_process_on_the_same_shard_is_refused_another_shard_shares(
    gateway, faces, reference, tmp_path
):
    """The first run is paused (SIGSTOP) once it holds its locks, so the others meet it
    mid-run however fast the machine is."""
    out = tmp_path / "out"
    first = _start(_args(gateway, faces, out, "--shard", "0/2", "--concurrency", "1"))
    try:
        _wait_for(lambda: (out / "job.json").exists(), first)
        first.send_signal(signal.SIGSTOP)
        second = _run(_args(gateway, faces, out, "--shard", "0/2"))
        assert second.returncode == 1
        assert second.stderr.strip() == (
            f"error: another stylegate batch is writing to {out} (pid {first.pid}): it holds "
            "chunk 0; wait for it or stop it (different --shard values of one job may share "
            "a folder)"
        )
        whole = _run(_args(gateway, faces, out))  # overlaps shard 0/2: refused as well
        assert whole.returncode == 1 and "another stylegate batch" in whole.stderr
        assert not (out / "manifest" / "chunk-00000.json").exists()
        other = _run(_args(gateway, faces, out, "--shard", "1/2"))  # shares the folder
        assert other.returncode == 0, other.stderr
        assert "wrote 4 items of shard 1/2" in other.stdout
    finally:
        first.send_signal(signal.SIGCONT)
        first.send_signal(signal.SIGTERM)  # a pod being stopped: like Ctrl-C, status 143
        _, stderr = first.communicate(timeout=30)
    assert first.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1].startswith("interrupted: ")
    rest = _run(_args(gateway, faces, out, "--shard", "0/2"))
    assert rest.returncode == 0, rest.stderr
    assert files(out) == reference


def test_seed_batches_shard_and_resume_byte_for_byte(tiny_repository, tmp_path):
    """Seed ranges: the pre-bulk names (seedNNNN.png), latents with their seeds, and the
    union of two shards is a one-process run (in-process CLI: fast)."""
    with running_gateway(load_repository(tiny_repository)) as gw:

        def run(out: Path, *extra: str):
            args = ["--server", gw.address, "--seeds", "3-12", "--out", str(out), *extra]
            result = CliRunner().invoke(batch, [*args, "--chunk-size", "4", "--truncation", "0.7"])
            assert result.exit_code == 0, result.output
            return result

        assert "wrote 10 images to" in run(tmp_path / "one").output
        run(tmp_path / "split", "--shard", "1/2")
        assert sorted(files(tmp_path / "split")) == [
            "job.json",
            "latents/chunk-00001.npz",
            "manifest/chunk-00001.json",
            *(f"seed{s:04d}.png" for s in range(7, 11)),
        ]
        run(tmp_path / "split", "--shard", "0/2")
        one = files(tmp_path / "one")
        assert files(tmp_path / "split") == one
        npz = np.load(tmp_path / "one" / "latents" / "chunk-00002.npz")
        assert npz["seeds"].tolist() == [11, 12] and npz["ids"].tolist() == ["seed0011", "seed0012"]
        # a lost image is redone on the next run, and only it
        (tmp_path / "one" / "seed0005.png").unlink()
        before = (tmp_path / "one" / "seed0004.png").stat().st_mtime_ns
        assert "(9 done before)" in run(tmp_path / "one").output
        assert files(tmp_path / "one") == one
        assert (tmp_path / "one" / "seed0004.png").stat().st_mtime_ns == before


def test_a_stop_signal_before_the_work_loop_is_an_interruption(tiny_repository, tmp_path):
    """SIGTERM can land while the runner is still setting up (CI once caught one inside
    the lazy import of the thread pool): it ends as Interrupted with the count done so
    far, the locks are released, and a rerun finishes the job."""
    from stylegate.service import bulk
    from stylegate.service.client import StylegateClient

    job = bulk.Job("generate", bulk.seed_items(range(6)), 2, {"model": "", "truncation": None})
    calls = []

    def stop_at_first_report(done: int, total: int) -> None:
        calls.append((done, total))
        if len(calls) == 1:  # the first report comes before the pool exists
            raise bulk.Terminated

    with running_gateway(load_repository(tiny_repository)) as gw, StylegateClient(gw.address) as c:
        with pytest.raises(bulk.Interrupted) as stopped:
            bulk.Runner(c, job, tmp_path / "out", concurrency=2).run(stop_at_first_report)
        assert (stopped.value.done, stopped.value.total) == (0, 6)
        summary = bulk.Runner(c, job, tmp_path / "out", concurrency=2).run()
    assert (summary.before, summary.done, summary.total) == (0, 6, 6)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--images", "{tmp}/nope"], {}, "--images {tmp}/nope: no such folder"),
        (["--images", "{tmp}/empty"], {}, "--images {tmp}/empty holds no images"),
        (["--images", "{tmp}/twins"], {}, "a.jpg and a.png would both write a.png"),
        (["--seeds", "1-3", "--images", "{tmp}/empty"], {}, "give --seeds (generate) or"),
        ([], {}, "give --seeds (generate) or --images (invert)"),
        (["--seeds", "5-1"], {}, "--seeds: range '5-1' runs backwards"),
        (["--seeds", "1,1"], {}, "--seeds lists seed 1 twice"),
        (["--seeds", "1", "--steps", "5"], {}, "--steps applies to --images"),
        (["--seeds", "1", "--optimizer", "adam"], {}, "--optimizer applies to --images"),
        (
            ["--images", "{tmp}/twins", "--method", "encoder", "--optimizer", "adam"],
            {},
            "--optimizer applies to in_domain and optimize, not to encoder",
        ),
        (["--seeds", "1", "--shard", "2/2"], {}, "need 0 <= index < count (got index 2 of 2)"),
        (["--seeds", "1", "--shard", "a/b"], {}, "--shard 'a/b' is not INDEX/COUNT"),
        (["--seeds", "1", "--shard-count", "4"], {}, "--shard-count needs $JOB_COMPLETION_INDEX"),
        (["--seeds", "1", "--shard-count", "4"], {"JOB_COMPLETION_INDEX": "4"}, "got index 4"),
        (["--images", "{tmp}/twins", "--edit", "smile"], {}, "--edit 'smile' is not NAME="),
    ],
)
def test_mistakes_are_one_line(tmp_path, args, env, message):
    """Caught before any connection (the server address is a dead port) or any file."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "twins").mkdir()
    for name in ("a.png", "a.jpg"):
        Image.new("RGB", (4, 4)).save(tmp_path / "twins" / name)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = CliRunner().invoke(
        batch,
        [*args, "--out", str(tmp_path / "out"), "--server", "127.0.0.1:1"],
        env={"JOB_COMPLETION_INDEX": None, **env},
    )
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and message.replace("{tmp}", str(tmp_path)) in line
    assert not (tmp_path / "out").exists()


def test_gateway_refusals_are_one_line(gateway, faces, reference, tmp_path):
    def run(*args: str):
        return CliRunner().invoke(batch, ["--server", gateway.address, *args])

    unknown = run("--images", str(faces), "--out", str(tmp_path / "m"), "--model", "nope")
    assert unknown.exit_code == 1
    (line,) = unknown.stderr.splitlines()
    assert line.startswith("error: NOT_FOUND: ") and "nope" in line
    no_such = run("--images", str(faces), "--out", str(tmp_path / "d"), "--edit", "nope=1")
    assert no_such.exit_code == 2
    assert no_such.stderr.startswith("error: --edit nope: the model has no such direction")
    # a folder holding another job (other steps) is not mixed into
    other = tmp_path / "other"
    other.mkdir()
    (other / "job.json").write_bytes(reference["job.json"])
    clash = run(
        "--images", str(faces), "--out", str(other), "--steps", "3", "--chunk-size", str(CHUNK),
        "--edit", "smile=2",
    )  # fmt: skip
    assert clash.exit_code == 2
    assert clash.stderr.strip() == (
        f"error: {other} holds another job (differs in: options); use another --out, "
        "or --restart to redo this shard's items with the new options"
    )


def test_a_bad_image_is_recorded_as_failed_and_the_job_goes_on(gateway, tmp_path):
    """One file that is no image among good ones: the job finishes, the bad one is in its
    chunk's manifest with the gateway's message and ok False in the latents, a warning names
    it, and a rerun has nothing left to do."""
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
            folder / f"face{i}.png"
        )
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    out = tmp_path / "out"
    args = [
        "batch", "--server", gateway.address, "--images", str(folder), "--out", str(out),
        "--steps", "2", "--chunk-size", "8",
    ]  # fmt: skip
    run = _run(args)
    assert run.returncode == 0, run.stderr
    warning = run.stderr.splitlines()[-1]
    assert warning.startswith("warning: 1 item(s) failed") and "broken.png" in warning
    manifest = json.loads((out / "manifest" / "chunk-00000.json").read_text())
    by_id = {e["id"]: e for e in manifest["items"]}
    assert by_id["broken"]["error"].startswith("INVALID_ARGUMENT") and not by_id["broken"]["files"]
    assert all((out / f"face{i}.png").is_file() for i in range(3))
    with np.load(out / "latents" / "chunk-00000.npz") as z:
        ok = dict(zip(z["ids"].tolist(), z["ok"].tolist()))
        assert not z["ws"][z["ids"].tolist().index("broken")].any()
    assert ok == {"broken": False, "face0": True, "face1": True, "face2": True}
    again = _run(args)
    assert again.returncode == 0 and "already done" in again.stdout

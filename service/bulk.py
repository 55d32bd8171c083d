"""Bulk jobs behind ``stylegate batch``: a seed range to generate, or a folder of images to
invert (and optionally edit), written to an output folder that survives crashes, Ctrl-C,
restarts and several writers.

Items and chunks. The job's items are the seeds in the order given, or the folder's image
files sorted by name (their id is the file's stem). Item ``i`` belongs to chunk
``i // chunk_size``; the chunk is the unit of the latents/manifest files, of locking and
of sharding: shard ``I/N`` takes the chunks ``c`` with ``c % N == I`` (round robin, so the
shards differ by at most one chunk of work whatever N). Every file name derives from the
global item or chunk index, never from the shard, so the union of the files of N shards
is the file set of a one-process run, byte for byte.

Layout of OUT (docs in README.md, "Bulk jobs")::

    job.json                    what the job is: options, inputs' fingerprint, chunking
    <id>.png                    the generated image / the inversion's reconstruction
    <id>.<name><+strength>.png  the inverted latent edited along a direction (--edit)
    latents/chunk-NNNNN.npz     ids [n] and ws [n, num_ws, w_dim] of the chunk's items
                                (inversions: ok [n] too, False for a failed item)
    manifest/chunk-NNNNN.json   the chunk's items: source, files with sha256, quality
    .lock                       POSIX record locks, one byte per chunk being written
    .pending/chunk-NNNNN/       items finished in a chunk not yet complete

Crash safety. Every file is written under a temporary name and renamed over the final one
(``os.replace``), so a final name never holds half a file. An item is committed when its
record (``.pending/chunk-NNNNN/<id>.npz``: latent and manifest entry) is renamed into
place, after all of its images; a chunk is complete when its manifest is, after its
latents file. A restart skips committed items and complete chunks and redoes the rest.

Determinism. Outputs depend on the item and the options only: the gateway seeds the
inversion's noise per request, files carry no timestamps (the NPZ zip entries have a fixed
date), JSON is written with sorted keys. One caveat is the gateway's, not this module's:
its batched ``inversion_step`` is not batch-invariant in the last float bits, so latents
of inversions are reproducible byte for byte when each inversion runs alone in its
micro-batch (``--concurrency 1`` on an otherwise idle gateway, or a gateway with
``max_batch`` 1); with concurrent inversions they agree to float rounding (~1e-7).
Generation is batch-invariant.

Bad inputs. An image the gateway refuses (INVALID_ARGUMENT: not an image, too large, ...)
is recorded as failed, its manifest entry carrying the error and its latent zeros, and the
job goes on; the run ends with a warning naming the first. Any other error stops the run
(it is resumable).

Several writers. Before writing, a process takes an exclusive ``fcntl`` record lock on
byte ``c`` of OUT/.lock for each chunk ``c`` it is going to write (POSIX locks work on
NFS, the usual shared volume of an Indexed Job); a second process pointed at the same
chunks by mistake finds them locked and stops before writing anything. Distinct shards
lock disjoint chunks and share the folder.

Nothing here imports torch: it runs in the gateway image.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import io
import json
import os
import shutil
import struct
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np

FORMAT = 1
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
JOB_FILE = "job.json"
LATENTS_DIR = "latents"
MANIFEST_DIR = "manifest"
PENDING_DIR = ".pending"
LOCK_FILE = ".lock"
PARTIAL = ".partial"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can carry: no timestamps
# Transient gateway answers an item is retried on (a restart, a full admission queue).
RETRY_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
RETRIES = 5


class BulkError(Exception):
    """A user's mistake (bad folder, shard, option, a folder of another job): one line."""


class Busy(Exception):
    """Another process is writing some of the same chunks to the same folder."""


class Terminated(BaseException):
    """SIGTERM (a pod being stopped): handled like Ctrl-C."""


class GatewayError(Exception):
    """The gateway answered something this client cannot use (a stream without a result)."""


class Interrupted(Exception):
    """The run stopped on Ctrl-C / SIGTERM; finished items are kept."""

    def __init__(self, done: int, total: int):
        super().__init__(f"{done} of {total} items done")
        self.done, self.total = done, total


# --- items, shards, edits -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Item:
    index: int  # position in the whole job (not the shard)
    id: str  # file stem of its outputs
    seed: int | None = None
    path: Path | None = None


def seed_items(seeds: Sequence[int]) -> list[Item]:
    """One item per seed, in the order given (a repeated seed is a mistake)."""
    seen: set[int] = set()
    for s in seeds:
        if s in seen:
            raise BulkError(f"--seeds lists seed {s} twice")
        seen.add(s)
    return [Item(i, f"seed{s:04d}", seed=s) for i, s in enumerate(seeds)]


def image_items(folder: Path) -> list[Item]:
    """The folder's image files (not recursive, hidden files skipped), sorted by name, so
    every process and every rerun numbers them the same."""
    if not folder.is_dir():
        raise BulkError(f"--images {folder}: no such folder")
    paths = sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )
    if not paths:
        raise BulkError(
            f"--images {folder} holds no images ({', '.join(s[1:] for s in IMAGE_SUFFIXES)})"
        )
    by_stem: dict[str, Path] = {}
    for p in paths:
        if p.stem in by_stem:
            raise BulkError(
                f"--images {folder}: {by_stem[p.stem].name} and {p.name} would both write "
                f"{p.stem}.png; rename one"
            )
        by_stem[p.stem] = p
    return [Item(i, p.stem, path=p) for i, p in enumerate(paths)]


@dataclasses.dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, spec: str) -> Shard:
        """'I/N' with 0 <= I < N."""
        try:
            index, count = (int(x) for x in spec.split("/"))
        except ValueError:
            raise BulkError(f"--shard {spec!r} is not INDEX/COUNT, e.g. 0/4") from None
        return cls.of(index, count, f"--shard {spec}")

    @classmethod
    def of(cls, index: int, count: int, what: str) -> Shard:
        if count < 1 or not 0 <= index < count:
            raise BulkError(f"{what}: need 0 <= index < count (got index {index} of {count})")
        return cls(index, count)

    def chunks(self, n_chunks: int) -> list[int]:
        """This shard's chunks: round robin over the job's."""
        return list(range(self.index, n_chunks, self.count))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclasses.dataclass(frozen=True)
class Edit:
    name: str
    strength: float

    @classmethod
    def parse(cls, spec: str) -> Edit:
        """'smile=3' or 'age=-2.5'."""
        name, sep, value = spec.partition("=")
        try:
            strength = float(value)
        except ValueError:
            strength = float("nan")
        if not sep or not name.strip() or not np.isfinite(strength):
            raise BulkError(f"--edit {spec!r} is not NAME=STRENGTH, e.g. smile=3")
        return cls(name.strip(), strength)

    @property
    def suffix(self) -> str:
        return f"{self.name}{self.strength:+g}"


# --- the job ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Job:
    kind: str  # "generate" (seeds) | "invert" (images)
    items: list[Item]
    chunk_size: int
    options: dict[str, Any]  # everything that changes an output, JSON-able
    edits: tuple[Edit, ...] = ()

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise BulkError("--chunk-size must be at least 1")
        names = [e.suffix for e in self.edits]
        if len(set(names)) != len(names):
            raise BulkError("the same --edit is given twice")

    @property
    def n_chunks(self) -> int:
        return -(-len(self.items) // self.chunk_size)

    def chunk(self, c: int) -> list[Item]:
        return self.items[c * self.chunk_size : (c + 1) * self.chunk_size]

    def files_of(self, item: Item) -> list[str]:
        """An item's image files, relative to OUT."""
        return [f"{item.id}.png"] + [f"{item.id}.{e.suffix}.png" for e in self.edits]

    def description(self) -> dict[str, Any]:
        """job.json: the same for every shard and every rerun of one job (no paths, no
        shard, no concurrency), so a folder can tell a resumed job from another one."""
        ids = "\n".join(i.id for i in self.items).encode()
        return {
            "format": FORMAT,
            "kind": self.kind,
            "inputs": {
                "items": len(self.items),
                "first": self.items[0].id,
                "last": self.items[-1].id,
                "ids_sha256": hashlib.sha256(ids).hexdigest(),
            },
            "options": self.options,
            "edits": [{"name": e.name, "strength": e.strength} for e in self.edits],
            "chunk_size": self.chunk_size,
            "chunks": self.n_chunks,
            "sharding": "shard I/N writes chunks c with c % N == I",
            "layout": {
                "image": "<id>.png",
                "edit": "<id>.<direction><+strength>.png",
                "latents": f"{LATENTS_DIR}/chunk-NNNNN.npz",
                "manifest": f"{MANIFEST_DIR}/chunk-NNNNN.json",
            },
        }


# --- deterministic, atomic files ----------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write under ``.NAME.partial`` and rename over NAME: a reader (or a restart) sees the
    old file or the whole new one. The temporary name is fixed: only the holder of the
    item's chunk lock writes it, and a leftover from a crash is simply overwritten."""
    tmp = path.with_name(f".{path.name}{PARTIAL}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz (``np.load`` reads it) whose bytes depend on the arrays only: np.savez
    stamps each zip entry with the current time."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE)
            info.external_attr = 0o644 << 16
            z.writestr(info, member.getvalue())
    return buf.getvalue()


def json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- locks --------------------------------------------------------------------------------


class ChunkLocks:
    """Exclusive POSIX record locks on byte ``c`` of OUT/.lock, one per chunk written.
    They go with the process (a crash or SIGKILL releases them) and work on NFS. POSIX
    locks are per process and dropped when any descriptor of the file closes: this object
    keeps the only one."""

    def __init__(self, path: Path):
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)

    def acquire(self, chunks: Iterable[int]) -> None:
        for c in chunks:
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, c)
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EAGAIN):
                    raise
                pid = self._holder(c)
                raise Busy(
                    f"another stylegate batch is writing to {self.path.parent}"
                    f"{f' (pid {pid})' if pid else ''}: it holds chunk {c}; wait for it "
                    "or stop it (different --shard values of one job may share a folder)"
                ) from None

    def _holder(self, c: int) -> int | None:
        """The pid of the process holding chunk ``c`` (F_GETLK; None where unknown, e.g.
        a holder on another machine)."""
        layout = "@hhqqi4x"  # struct flock on Linux: type, whence, start, len, pid
        try:
            query = struct.pack(layout, fcntl.F_WRLCK, os.SEEK_SET, c, 1, 0)
            kind, _, _, _, pid = struct.unpack(layout, fcntl.fcntl(self.fd, fcntl.F_GETLK, query))
        except (OSError, struct.error):
            return None
        return pid if kind != fcntl.F_UNLCK and pid > 0 else None

    def close(self) -> None:
        os.close(self.fd)


# --- the output folder --------------------------------------------------------------------


@dataclasses.dataclass
class Record:
    """A committed item: its manifest entry and its latent."""

    entry: dict[str, Any]
    ws: np.ndarray


class Output:
    def __init__(self, root: Path, job: Job):
        self.root, self.job = root, job

    def name(self, c: int) -> str:
        return f"chunk-{c:05d}"

    def latents(self, c: int) -> Path:
        return self.root / LATENTS_DIR / f"{self.name(c)}.npz"

    def manifest(self, c: int) -> Path:
        return self.root / MANIFEST_DIR / f"{self.name(c)}.json"

    def pending(self, c: int) -> Path:
        return self.root / PENDING_DIR / self.name(c)

    def prepare(self) -> None:
        for d in (self.root, self.root / LATENTS_DIR, self.root / MANIFEST_DIR):
            d.mkdir(parents=True, exist_ok=True)

    def claim(self, restart: bool) -> None:
        """Write job.json if absent (create-if-absent, so two jobs started at once cannot
        both think the folder theirs); refuse a folder of another job unless ``restart``."""
        path = self.root / JOB_FILE
        mine = json_bytes(self.job.description())
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{JOB_FILE}.", suffix=PARTIAL)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(mine)
            try:
                os.link(tmp, path)
            except FileExistsError:
                theirs = path.read_bytes()
                if theirs != mine:
                    if not restart:
                        raise BulkError(_difference(path, theirs, self.job)) from None
                    os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _files_present(self, entries: Iterable[dict[str, Any]]) -> bool:
        return all((self.root / f).is_file() for e in entries for f in e["files"])

    def complete(self, c: int) -> bool:
        """The chunk's manifest and latents are in place and so are its items' images."""
        try:
            manifest = json.loads(self.manifest(c).read_text())
        except (OSError, ValueError):
            return False
        return self.latents(c).is_file() and self._files_present(manifest["items"])

    def committed(self, c: int) -> dict[str, Record]:
        """Records of the chunk's committed items whose images are still there. A chunk
        recorded complete but missing some image is reopened: its intact items are staged
        again (from its manifest and latents) and the missing ones redone."""
        staged: dict[str, Record] = {}
        if self.manifest(c).exists():
            with contextlib.suppress(OSError, ValueError, KeyError):
                entries = json.loads(self.manifest(c).read_text())["items"]
                with np.load(self.latents(c), allow_pickle=False) as z:
                    rows = dict(zip(z["ids"].tolist(), z["ws"]))
                for e in entries:
                    if self._files_present([e]) and e["id"] in rows:
                        self.commit(c, Record(e, rows[e["id"]]))
            self.manifest(c).unlink(missing_ok=True)
        pending = self.pending(c)
        if pending.is_dir():
            for path in sorted(pending.glob("*.npz")):
                try:
                    with np.load(path, allow_pickle=False) as z:
                        record = Record(json.loads(str(z["entry"])), z["ws"])
                except (OSError, ValueError, KeyError, zipfile.BadZipFile):
                    continue  # not a record (cannot happen short of tampering): redo it
                if self._files_present([record.entry]):
                    staged[record.entry["id"]] = record
        return staged

    def write_image(self, name: str, data: bytes) -> str:
        write_atomic(self.root / name, data)
        return sha256(data)

    def commit(self, c: int, record: Record) -> None:
        """The item's commit point: its images are already in place."""
        self.pending(c).mkdir(parents=True, exist_ok=True)
        arrays = {"entry": np.array(json.dumps(record.entry, sort_keys=True)), "ws": record.ws}
        write_atomic(self.pending(c) / f"{record.entry['id']}.npz", npz_bytes(arrays))

    def finish(self, c: int, records: dict[str, Record]) -> None:
        """Latents, then the manifest (the chunk's commit point), then drop the staging."""
        items = self.job.chunk(c)
        ids = [i.id for i in items]
        latents = npz_bytes(
            {
                "ids": np.array(ids),
                "ws": np.stack([records[i].ws for i in ids]).astype("<f4"),
                **(
                    {"seeds": np.array([i.seed for i in items], dtype="<i8")}
                    if self.job.kind == "generate"
                    # False: the item failed (its manifest entry says why), its ws is zeros
                    else {"ok": np.array(["error" not in records[i].entry for i in ids])}
                ),
            }
        )
        write_atomic(self.latents(c), latents)
        manifest = {
            "format": FORMAT,
            "chunk": c,
            "latents": {"file": f"{LATENTS_DIR}/{self.latents(c).name}", "sha256": sha256(latents)},
            "items": [records[i].entry for i in ids],
        }
        write_atomic(self.manifest(c), json_bytes(manifest))
        _fsync_dir(self.manifest(c).parent)
        shutil.rmtree(self.pending(c), ignore_errors=True)


def _difference(path: Path, theirs: bytes, job: Job) -> str:
    """One line on how the folder's job differs from this one."""
    try:
        old = json.loads(theirs)
    except ValueError:
        old = {}
    new = job.description()
    changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    detail = ", ".join(changed) if changed else "unreadable"
    return (
        f"{path.parent} holds another job (differs in: {detail}); "
        "use another --out, or --restart to redo this shard's items with the new options"
    )


# --- running ------------------------------------------------------------------------------


@dataclasses.dataclass
class Summary:
    total: int  # items of this shard
    before: int  # committed before this run
    done: int  # committed now, this run's included
    chunks: int  # chunks of this shard
    failed: list[str] = dataclasses.field(default_factory=list)  # "<source>: <error>" (this run)


class _Calls:
    """The RPCs in flight, so a stop can cancel them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active: set[grpc.Call] = set()
        self.stopping = threading.Event()

    @contextlib.contextmanager
    def track(self, call: grpc.Call):
        with self.lock:
            if self.stopping.is_set():
                call.cancel()
            self.active.add(call)
        try:
            yield call
        finally:
            with self.lock:
                self.active.discard(call)

    def stop(self) -> None:
        with self.lock:
            self.stopping.set()
            for call in list(self.active):
                call.cancel()


class _Abandoned(Exception):
    """A unit of work cancelled by a stop (not an error: it is redone on resume)."""


def _retrying(calls: _Calls, attempt: Callable[[], Any]) -> Any:
    """``attempt()`` again after transient gateway errors (restarts, full queues)."""
    for n in range(RETRIES + 1):
        if calls.stopping.is_set():
            raise _Abandoned
        try:
            return attempt()
        except grpc.RpcError as err:
            if calls.stopping.is_set() and err.code() == grpc.StatusCode.CANCELLED:
                raise _Abandoned from None
            if err.code() not in RETRY_CODES or n == RETRIES:
                raise
            if calls.stopping.wait(min(0.25 * 2**n, 8.0)):
                raise _Abandoned from None
    raise AssertionError("unreachable")


def image_bytes(img) -> bytes:
    """A response image as PNG bytes: the gateway's own encoding when it sent PNG (no
    decode and re-encode), else encoded here."""
    from stylegate.protos.v1 import stylegate_pb2 as pb

    if img.WhichOneof("content") == "data" and img.format == pb.IMAGE_FORMAT_PNG:
        return img.data
    from PIL import Image

    from stylegate.service.client import image_array

    buf = io.BytesIO()
    Image.fromarray(image_array(img)).save(buf, format="PNG")
    return buf.getvalue()


class Runner:
    """Runs one shard of a job against a gateway (a ``StylegateClient``)."""

    def __init__(
        self,
        client,
        job: Job,
        out: Path,
        shard: Shard = Shard(),
        *,
        concurrency: int = 1,
        restart: bool = False,
    ):
        self.client, self.job, self.shard = client, job, shard
        self.output = Output(out, job)
        self.concurrency = max(1, concurrency)
        self.restart = restart
        self.calls = _Calls()
        self._shape: tuple[int, int] | None = None
        self._failed: list[str] = []
        self._done = 0  # items done so far, for the count an interruption reports

    # -- the work of one unit --------------------------------------------------------------
    def _invert(self, c: int, item: Item) -> list[Record]:
        from stylegate.service.client import tensor_to_array

        o = self.job.options
        source = item.path.read_bytes()
        entry = {
            "index": item.index,
            "id": item.id,
            "source": item.path.name,
            "source_sha256": sha256(source),
        }

        def attempt():
            stream = self.client.invert_stream(
                source,
                model=o["model"],
                method=o["method"],
                steps=o["steps"],
                learning_rate=o["learning_rate"],
                space=o["space"],
                optimizer=o["optimizer"],
                progress_every=1_000_000,  # no per-step messages: only the result matters
            )
            with self.calls.track(stream):
                for message in stream:
                    if message.HasField("result"):
                        return message.result
            raise GatewayError(f"{item.path.name}: the Invert stream ended without a result")

        try:
            r = _retrying(self.calls, attempt)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise  # the gateway's or the job's problem: stop (resumable)
            # this input's problem (not an image, too large, ...): recorded as failed, with
            # a zero latent, and the job goes on; rerunning gives the same, so it is final
            entry |= {"files": {}, "error": f"{err.code().name}: {err.details()}"}
            record = Record(entry, np.zeros(self._latent_shape(), np.float32))
            self.output.commit(c, record)
            return [record]
        ws = tensor_to_array(r.ws)
        files = {}
        name = f"{item.id}.png"
        files[name] = self.output.write_image(name, image_bytes(r.reconstruction))
        for e in self.job.edits:
            edited = _retrying(
                self.calls,
                lambda e=e: self.client.edit(ws, [(e.name, e.strength)], model=o["model"]),
            )
            name = f"{item.id}.{e.suffix}.png"
            files[name] = self.output.write_image(name, image_bytes(edited.image))
        q = r.quality
        entry |= {
            "files": files,
            "steps": r.steps,
            "early_stopped": r.early_stopped,
            "loss": float(r.loss),
            "method": r.method,
            "optimizer": r.optimizer,
            "space": r.space,
            "quality": {
                "psnr": float(q.psnr),
                "ssim": float(q.ssim),
                "perceptual_distance": float(q.perceptual_distance),
                "in_domain_score": float(q.in_domain_score),
            },
        }
        record = Record(entry, ws)
        self.output.commit(c, record)
        return [record]

    def _generate(self, c: int, items: list[Item]) -> list[Record]:
        """The chunk's missing seeds in one BatchGenerate stream (one chunk of the
        gateway's), committed image by image as they arrive."""
        from stylegate.protos.v1 import stylegate_pb2 as pb
        from stylegate.service.client import tensor_to_array

        o = self.job.options
        by_seed = {i.seed: i for i in items}
        records: list[Record] = []

        def attempt():
            missing = [s for s in by_seed if s not in {r.entry["seed"] for r in records}]
            request = pb.BatchGenerateRequest(
                model=o["model"],
                list=pb.SeedList(seeds=missing),
                # at most the gateway's default chunk (a size over its max_batch is refused);
                # the images do not depend on it: generation is batch-invariant
                chunk_size=min(len(missing), 16),
                truncation=pb.Truncation(psi=o["truncation"]),
                output=pb.OutputOptions(format=pb.IMAGE_FORMAT_PNG),
                return_latents=True,
            )
            stream = self.client.stub.BatchGenerate(request, timeout=self.client.timeout)
            with self.calls.track(stream):
                for chunk in stream:
                    for g in chunk.images:
                        item = by_seed[g.seed]
                        name = f"{item.id}.png"
                        entry = {
                            "index": item.index,
                            "id": item.id,
                            "seed": item.seed,
                            "files": {name: self.output.write_image(name, image_bytes(g.image))},
                        }
                        record = Record(entry, tensor_to_array(g.ws))
                        self.output.commit(c, record)
                        records.append(record)

        _retrying(self.calls, attempt)
        return records

    # -- the loop ------------------------------------------------------------------------
    def run(self, progress: Callable[[int, int], None] | None = None) -> Summary:
        """Lock this shard's unfinished chunks, then do their missing items, at most
        ``concurrency`` units at once; chunks are completed as their last item commits.
        Raises Busy, BulkError, Interrupted (Ctrl-C / SIGTERM) or grpc.RpcError."""
        job, out = self.job, self.output
        chunks = self.shard.chunks(job.n_chunks)
        total = sum(len(job.chunk(c)) for c in chunks)
        out.prepare()
        with contextlib.suppress(FileNotFoundError):
            (out.root / ".resume").unlink()  # the token file of the pre-bulk `batch`
        # a chunk to lock: unfinished, or finished with its staging left by a crash
        open_chunks = [
            c for c in chunks if self.restart or not out.complete(c) or out.pending(c).exists()
        ]
        locks = ChunkLocks(out.root / LOCK_FILE)
        self._done = 0
        try:
            locks.acquire(open_chunks)
            out.claim(self.restart)
            return self._run(chunks, open_chunks, total, progress)
        except (KeyboardInterrupt, Terminated):  # a signal before or after the work loop
            raise Interrupted(self._done, total) from None
        finally:
            locks.close()

    def _run(self, chunks, open_chunks, total, progress) -> Summary:
        job, out = self.job, self.output
        staged: dict[int, dict[str, Record]] = {}
        units: list[tuple[int, list[Item]]] = []
        for c in open_chunks:
            if not self.restart and out.complete(c):
                shutil.rmtree(out.pending(c), ignore_errors=True)  # killed before cleaning
                continue
            if self.restart:
                shutil.rmtree(out.pending(c), ignore_errors=True)
                out.manifest(c).unlink(missing_ok=True)
            staged[c] = {} if self.restart else out.committed(c)
            todo = [i for i in job.chunk(c) if i.id not in staged[c]]
            if not todo:
                out.finish(c, staged[c])  # every item committed before a crash
            elif job.kind == "generate":
                units.append((c, todo))
            else:
                units.extend((c, [i]) for i in todo)
        before = total - sum(len(items) for _, items in units)
        done = self._done = before
        if progress:
            progress(done, total)

        work = self._invert_unit if job.kind == "invert" else self._generate
        queue, in_flight = list(reversed(units)), {}
        error: BaseException | None = None
        pool = None
        try:
            pool = concurrent.futures.ThreadPoolExecutor(self.concurrency, "bulk")
            while queue or in_flight:
                while queue and len(in_flight) < self.concurrency:
                    c, items = queue.pop()
                    in_flight[pool.submit(work, c, items)] = c
                finished, _ = concurrent.futures.wait(
                    in_flight, timeout=0.5, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for f in finished:
                    c = in_flight.pop(f)
                    done += self._collect(f, c, staged)
                    self._done = done
                if progress:
                    progress(done, total)
        except BaseException as exc:  # noqa: BLE001 - Ctrl-C, SIGTERM, errors: stop cleanly
            error = exc
            self.calls.stop()
            for f in concurrent.futures.as_completed(in_flight):
                with contextlib.suppress(Exception):  # abandoned or failed: redone later
                    done += self._collect(f, in_flight[f], staged)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._done = done
        if isinstance(error, (KeyboardInterrupt, Terminated)):
            if progress:
                progress(done, total)
            raise Interrupted(done, total) from None
        if error is not None:
            raise error
        return Summary(
            total=total, before=before, done=done, chunks=len(chunks), failed=self._failed
        )

    def _invert_unit(self, c: int, items: list[Item]) -> list[Record]:
        return self._invert(c, items[0])

    def _latent_shape(self) -> tuple[int, int]:
        """[num_ws, w_dim] of the job's model (the zero latent of a failed item)."""
        if self._shape is None:
            info = _retrying(self.calls, lambda: self.client.model_info(self.job.options["model"]))
            self._shape = (int(info.num_ws), int(info.w_dim))
        return self._shape

    def _collect(self, f: concurrent.futures.Future, c: int, staged) -> int:
        """Take a unit's records (its exception if it failed); complete its chunk when
        every item is in."""
        try:
            records = f.result()
        except _Abandoned:
            return 0
        for r in records:
            staged[c][r.entry["id"]] = r
            if "error" in r.entry:
                self._failed.append(f"{r.entry['source']}: {r.entry['error']}")
        if len(staged[c]) == len(self.job.chunk(c)):
            self.output.finish(c, staged[c])
        return len(records)

"""InterFaceGAN boundaries for any served generator, trained after export: from the user's
own labels (a CSV of seeds or latent files with attribute scores) or from the user's ONNX
attribute classifier, and written into the repository's ``stylegate.json``.

Torch-free on purpose: the generator runs through the repository's own mapping and
synthesis ONNX models with onnxruntime, so a user's imported generator gets attribute
directions the same way the shipped one does (export/directions.py, docs/design.md).

Labels CSV (header row first, then one row per sample)::

    seed,smile,age          # or a column "latent" with .npy paths (relative to the CSV)
    12,1,34.5
    inverted/me.npy,0,41

- The source column is named ``seed``, ``latent`` or ``source``; a cell is an integer seed
  or a ``.npy`` file holding W ``[w_dim]`` or W+ ``[num_ws, w_dim]``. A W+ latent counts as
  the mean of its layers inside the boundary's layer range: an edit adds the direction to
  exactly those layers, so that mean is the point the edit moves along the direction.
- A class-conditional generator (``c_dim`` > 0) needs a ``class`` column: each seed's
  class index. Every other column is one attribute. A column of only 0/1 (or -1/1)
  values is a binary label: the boundary separates its two classes. Any other column is
  a score: its top and bottom ``fraction`` of rows are the two classes, as InterFaceGAN
  does.
- Seeds become latents with the project's one seed rule and no truncation.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stylegate.service.signatures import MAX_SEED, METADATA_FILE, z_from_seed

SOURCE_COLUMNS = ("seed", "latent", "source")
CLASS_COLUMN = "class"
METHOD = "interfacegan"
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class BoundaryError(ValueError):
    """Bad input to boundary training; the message is one line naming the file / field."""


@dataclasses.dataclass(frozen=True)
class BoundaryOptions:
    """How boundaries are fit (defaults follow export/directions.py)."""

    fraction: float = 0.15  # score columns: top / bottom fraction taken as positives / negatives
    holdout: float = 0.2  # share of each class kept out of the fit to measure accuracy
    num_w_samples: int = 10_000  # sampled w for each direction's std along W
    seed: int = 0  # train / held-out split and SVM
    batch: int = 256  # samples per onnxruntime run


DEFAULT_OPTIONS = BoundaryOptions()


@dataclasses.dataclass(frozen=True)
class Boundary:
    """One trained direction, as it goes into ``stylegate.json``."""

    name: str
    attribute: str
    vector: np.ndarray  # [w_dim], unit norm, pointing to higher scores / the positive class
    std: float  # std of sampled w projected on vector
    layers: tuple[int, int]  # default [start, stop) over num_ws
    accuracy: float  # held-out accuracy of the linear boundary
    train_samples: int
    test_samples: int

    def entry(self) -> dict:
        return {
            "method": METHOD,
            "vector": [float(v) for v in self.vector.astype(np.float32)],
            "std": float(self.std),
            "layers": [int(self.layers[0]), int(self.layers[1])],
            "attribute": self.attribute,
            "accuracy": float(self.accuracy),
            "train_samples": int(self.train_samples),
            "test_samples": int(self.test_samples),
        }


# --------------------------------------------------------------------------- the generator


@dataclasses.dataclass(frozen=True)
class GeneratorMeta:
    """What boundary training needs of a generator's ``stylegate.json`` entry."""

    name: str
    resolution: int
    num_ws: int
    w_dim: int
    z_dim: int
    c_dim: int  # class-label size of a conditional generator, 0 when unconditional
    w_avg: np.ndarray  # [w_dim]
    models: dict[str, str]  # network -> served model name


def read_generator(repository: str | Path, model: str = "") -> GeneratorMeta:
    """The entry of ``model`` (default: the repository's default generator)."""
    path = Path(repository) / METADATA_FILE
    try:
        meta = json.loads(path.read_text())
        generators = meta["generators"]
        name = model or meta.get("default_generator") or next(iter(generators))
    except FileNotFoundError:
        raise BoundaryError(f"no {path} (run `stylegate export` first)") from None
    except (OSError, ValueError, KeyError, TypeError, StopIteration) as exc:
        raise BoundaryError(f"{path}: not a stylegate repository metadata file ({exc!r})") from None
    if name not in generators:
        known = ", ".join(sorted(generators))
        raise BoundaryError(f"unknown model {name!r} in {path} (served: {known})")
    raw = generators[name]
    try:
        info = GeneratorMeta(
            name=name,
            resolution=int(raw["resolution"]),
            num_ws=int(raw["num_ws"]),
            w_dim=int(raw["w_dim"]),
            z_dim=int(raw["z_dim"]),
            c_dim=int(raw.get("c_dim", 0)),
            w_avg=np.asarray(raw["w_avg"], dtype=np.float64),
            models=dict(raw["models"]),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise BoundaryError(f"{path}: generator {name!r} entry is invalid ({exc!r})") from None
    for network in ("mapping", "synthesis"):
        if network not in info.models:
            raise BoundaryError(f"{path}: generator {name!r} has no {network} model")
    return info


class OnnxGenerator:
    """A served generator's mapping and synthesis, run with onnxruntime (sessions lazily)."""

    def __init__(self, repository: str | Path, model: str = "", *, threads: int = 2) -> None:
        self.root = Path(repository)
        self.info = read_generator(repository, model)
        self.threads = threads
        self._sessions: dict = {}

    @property
    def name(self) -> str:
        return self.info.name

    def _session(self, network: str):
        if network not in self._sessions:
            path = self.root / self.info.models[network] / "1" / "model.onnx"
            if not path.is_file():
                raise BoundaryError(f"{path}: the {network} model of {self.name!r} is missing")
            self._sessions[network] = _session(path, self.threads)
        return self._sessions[network]

    def mapping(self, z: np.ndarray, classes: np.ndarray | None = None, *, batch: int = 256):
        """z [N, z_dim] -> w [N, w_dim]; a conditional generator takes class indices [N]
        (default: each row's index modulo c_dim, so samples cover every class)."""
        session = self._session("mapping")
        c_dim = self.info.c_dim
        if c_dim and classes is None:
            classes = np.arange(len(z)) % c_dim
        out = []
        for i in range(0, len(z), batch):
            feed = {"z": z[i : i + batch].astype(np.float32)}
            if c_dim:
                feed["c"] = np.eye(c_dim, dtype=np.float32)[classes[i : i + batch]]
            out.append(session.run(["w"], feed)[0])
        return np.concatenate(out).astype(np.float64)

    def synthesis(self, w: np.ndarray) -> np.ndarray:
        """w [N, w_dim] -> images [N, 3, R, R] in about [-1, 1] (the model's constant noise)."""
        ws = np.repeat(w.astype(np.float32)[:, None, :], self.info.num_ws, axis=1)
        gain = np.ones((len(w), 1), np.float32)
        return self._session("synthesis").run(["image"], {"ws": ws, "noise_gain": gain})[0]

    def w_of_seeds(
        self, seeds: Sequence[int], classes: np.ndarray | None = None, *, batch: int = 256
    ) -> np.ndarray:
        """Untruncated w of each seed: [N, w_dim] float64."""
        z = np.stack([z_from_seed(int(s), self.info.z_dim) for s in seeds])
        return self.mapping(z, classes, batch=batch)


def _session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own hierarchy
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BoundaryError(f"{path}: not a loadable ONNX model ({first})") from None


# --------------------------------------------------------------------------- labels


@dataclasses.dataclass(frozen=True)
class Labels:
    """A parsed labels CSV: one source (seed or .npy path) and score row per sample."""

    path: Path
    sources: tuple[int | Path, ...]
    lines: tuple[int, ...]  # CSV line of each sample, for error messages
    attributes: tuple[str, ...]
    scores: np.ndarray  # [N, A] float64
    classes: np.ndarray | None  # [N] class index (conditional generators), else None


def read_labels(path: str | Path, *, c_dim: int = 0) -> Labels:
    """Parse and validate a labels CSV (module docstring); BoundaryError names file/line/column.
    ``c_dim`` > 0: the generator is class-conditional and a ``class`` column is required."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise BoundaryError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise BoundaryError(f"{path}: not a UTF-8 text CSV file") from None
    rows = list(csv.reader(text.splitlines()))
    numbered = [(i + 1, r) for i, r in enumerate(rows) if any(c.strip() for c in r)]
    if not numbered:
        raise BoundaryError(f"{path}: empty file (expected a header row and labelled rows)")
    header_line, header = numbered[0]
    header = [h.strip() for h in header]
    lower = [h.lower() for h in header]
    source_cols = [i for i, h in enumerate(lower) if h in SOURCE_COLUMNS]
    if not source_cols:
        raise BoundaryError(
            f"{path} line {header_line}: missing column 'seed' (or 'latent') in header "
            f"{','.join(header)}"
        )
    if len(source_cols) > 1:
        raise BoundaryError(f"{path} line {header_line}: more than one seed/latent column")
    src = source_cols[0]
    cls = lower.index(CLASS_COLUMN) if c_dim and CLASS_COLUMN in lower else None
    if c_dim and cls is None:
        raise BoundaryError(
            f"{path} line {header_line}: missing column 'class' (the model is "
            f"class-conditional: a class index in [0, {c_dim}) per row)"
        )
    attr_cols = [i for i in range(len(header)) if i != src and i != cls]
    if not attr_cols:
        raise BoundaryError(f"{path} line {header_line}: no attribute score columns in header")
    for i in attr_cols:
        if not _NAME.match(header[i]):
            raise BoundaryError(
                f"{path} line {header_line}: column {i + 1} header {header[i]!r} is not a "
                "valid attribute name (letters, digits, _ . -)"
            )
    dup = {h for h in (header[i] for i in attr_cols) if [header[j] for j in attr_cols].count(h) > 1}
    if dup:
        raise BoundaryError(f"{path} line {header_line}: duplicate column {min(dup)!r}")

    sources: list[int | Path] = []
    lines: list[int] = []
    scores: list[list[float]] = []
    classes: list[int] = []
    for line, row in numbered[1:]:
        if len(row) != len(header):
            missing = header[len(row)] if len(row) < len(header) else None
            what = f"missing column {missing!r}" if missing else "extra cells"
            raise BoundaryError(
                f"{path} line {line}: {what} (expected {len(header)} cells, found {len(row)})"
            )
        cell = row[src].strip()
        sources.append(_source(cell, path, line, header[src]))
        lines.append(line)
        values = []
        for i in attr_cols:
            values.append(_number(row[i], path, line, header[i]))
        scores.append(values)
        if cls is not None:
            value = _number(row[cls], path, line, header[cls])
            if value != int(value) or not 0 <= value < c_dim:
                raise BoundaryError(
                    f"{path} line {line}, column {header[cls]!r}: {row[cls].strip()!r} is not "
                    f"a class index in [0, {c_dim})"
                )
            classes.append(int(value))
    if not sources:
        raise BoundaryError(f"{path}: no labelled rows after the header")
    return Labels(
        path=path,
        sources=tuple(sources),
        lines=tuple(lines),
        attributes=tuple(header[i] for i in attr_cols),
        scores=np.asarray(scores, dtype=np.float64),
        classes=np.asarray(classes, dtype=np.int64) if cls is not None else None,
    )


def _source(cell: str, path: Path, line: int, column: str) -> int | Path:
    if cell.lower().endswith(".npy"):
        latent = Path(cell)
        return latent if latent.is_absolute() else path.parent / latent
    try:
        seed = int(cell)
    except ValueError:
        raise BoundaryError(
            f"{path} line {line}, column {column!r}: {cell!r} is neither a seed nor a .npy file"
        ) from None
    if not 0 <= seed <= MAX_SEED:
        raise BoundaryError(
            f"{path} line {line}, column {column!r}: seed {seed} is outside [0, {MAX_SEED}]"
        )
    return seed


def _number(cell: str, path: Path, line: int, column: str) -> float:
    try:
        value = float(cell.strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise BoundaryError(
            f"{path} line {line}, column {column!r}: {cell.strip()!r} is not a number"
        )
    return value


def latents_of(
    labels: Labels,
    gen: OnnxGenerator,
    layers: tuple[int, int],
    *,
    batch: int = 256,
) -> np.ndarray:
    """w of every labelled sample [N, w_dim]: seeds through the mapping, .npy files loaded
    (W+ files averaged over ``layers``)."""
    info = gen.info
    out = np.zeros((len(labels.sources), info.w_dim), np.float64)
    seed_rows = [i for i, s in enumerate(labels.sources) if isinstance(s, int)]
    if seed_rows:
        classes = labels.classes[seed_rows] if labels.classes is not None else None
        out[seed_rows] = gen.w_of_seeds(
            [labels.sources[i] for i in seed_rows], classes, batch=batch
        )
    for i, src in enumerate(labels.sources):
        if isinstance(src, int):
            continue
        where = f"{labels.path} line {labels.lines[i]}"
        if not src.is_file():
            raise BoundaryError(f"{where}: latent file {src} not found")
        try:
            x = np.load(src, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise BoundaryError(f"{where}: {src} is not a .npy array ({exc})") from None
        if x.shape == (info.w_dim,):
            w = x
        elif x.shape == (info.num_ws, info.w_dim):
            w = x[layers[0] : layers[1]].mean(0)
        else:
            raise BoundaryError(
                f"{where}: latent {src} has shape {list(x.shape)}, expected W [{info.w_dim}] or "
                f"W+ [{info.num_ws}, {info.w_dim}] for model {info.name!r}"
            )
        if not np.isfinite(w).all():
            raise BoundaryError(f"{where}: latent {src} has NaN or Inf values")
        out[i] = w
    return out


# --------------------------------------------------------------------------- classifier


def classifier_scores(
    gen: OnnxGenerator,
    classifier: str | Path,
    samples: int,
    *,
    attributes: Sequence[str] = (),
    first_seed: int = 0,
    batch: int = 64,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Generate ``samples`` images (seeds first_seed, first_seed+1, ...) and score them with
    the user's ONNX classifier (image [B, 3, R, R] in [-1, 1] -> scores [B, A]).
    Returns (w [N, w_dim], scores [N, A], attribute names)."""
    classifier = Path(classifier)
    if not classifier.is_file():
        raise BoundaryError(f"{classifier}: classifier file not found")
    session = _session(classifier, gen.threads)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise BoundaryError(
            f"{classifier}: expected one input (image [B, 3, R, R]), found {len(inputs)}"
        )
    shape = list(inputs[0].shape)
    r = gen.info.resolution
    fixed = [d if isinstance(d, int) else None for d in shape]
    if len(shape) != 4 or fixed[1] not in (None, 3) or any(d not in (None, r) for d in fixed[2:]):
        raise BoundaryError(
            f"{classifier}: input {inputs[0].name!r} has shape {shape}, expected "
            f"[B, 3, {r}, {r}] for model {gen.name!r}"
        )
    names = tuple(a.strip() for a in attributes if a.strip())
    if not names:
        meta = session.get_modelmeta().custom_metadata_map
        raw = meta.get("attributes", "")
        try:
            parsed = json.loads(raw) if raw.strip().startswith("[") else raw.split(",")
        except json.JSONDecodeError:
            parsed = []
        names = tuple(str(a).strip() for a in parsed if str(a).strip())
    seeds = list(range(first_seed, first_seed + samples))
    w = gen.w_of_seeds(seeds)
    scores = []
    for i in range(0, samples, batch):
        images = gen.synthesis(w[i : i + batch])
        out = np.asarray(session.run([outputs[0].name], {inputs[0].name: images})[0])
        scores.append(out.reshape(len(images), -1))
    scores = np.concatenate(scores).astype(np.float64)
    if not names:
        raise BoundaryError(
            f"{classifier}: name its {scores.shape[1]} outputs with --attributes a,b,... "
            "(the model has no 'attributes' metadata)"
        )
    if len(names) != scores.shape[1]:
        raise BoundaryError(
            f"{classifier}: {len(names)} attribute names ({','.join(names)}) for "
            f"{scores.shape[1]} outputs"
        )
    for n in names:
        if not _NAME.match(n):
            raise BoundaryError(f"attribute name {n!r} is not valid (letters, digits, _ . -)")
    if not np.isfinite(scores).all():
        raise BoundaryError(f"{classifier}: the classifier returned NaN or Inf scores")
    return w, scores, names


# --------------------------------------------------------------------------- fitting


def split_labels(
    score: np.ndarray, *, fraction: float, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the negative and positive class: the two values of a binary label, else the
    bottom and top ``fraction`` of scores. ``where`` names the column in errors."""
    values = set(np.unique(score).tolist())
    if len(values) == 1:
        raise BoundaryError(
            f"{where}: every sample has the value {score[0]:g}; both classes are needed"
        )
    if values <= {0.0, 1.0} or values <= {-1.0, 1.0}:
        neg, pos = np.flatnonzero(score <= 0), np.flatnonzero(score > 0)
    else:
        order = np.argsort(score, kind="stable")
        k = max(1, int(len(score) * fraction))
        neg, pos = order[:k], order[-k:]
        if score[neg].max() >= score[pos].min():
            raise BoundaryError(
                f"{where}: the top and bottom {fraction:g} of scores overlap; "
                "label more samples or raise --fraction"
            )
    for cls, rows in (("negative", neg), ("positive", pos)):
        if len(rows) < 3:
            raise BoundaryError(
                f"{where}: only {len(rows)} {cls} sample(s); at least 3 of each class are needed"
            )
    return neg, pos


def fit_boundary(
    w: np.ndarray, neg: np.ndarray, pos: np.ndarray, *, holdout: float, seed: int
) -> tuple[np.ndarray, float, int, int]:
    """Linear SVM (InterFaceGAN) between w[neg] and w[pos], a stratified ``holdout`` share of
    each class kept out. Returns (unit normal towards pos, held-out accuracy, n train, n test)."""
    try:
        from sklearn.svm import LinearSVC
    except ImportError:
        raise BoundaryError(
            "training boundaries needs scikit-learn, which is not installed here "
            "(the training/export extra: pip install 'stylegate[train]')"
        ) from None

    rng = np.random.default_rng(seed)
    train, test = [], []
    for rows in (neg, pos):
        rows = rng.permutation(rows)
        k = max(1, round(len(rows) * holdout))
        test.append(rows[:k])
        train.append(rows[k:])
    y_train = np.concatenate([np.zeros(len(train[0])), np.ones(len(train[1]))])
    y_test = np.concatenate([np.zeros(len(test[0])), np.ones(len(test[1]))])
    x_train, x_test = w[np.concatenate(train)], w[np.concatenate(test)]
    mean = x_train.mean(0)
    svm = LinearSVC(C=1.0, class_weight="balanced", max_iter=50_000, random_state=seed)
    svm.fit(x_train - mean, y_train)
    accuracy = float(svm.score(x_test - mean, y_test))
    coef = svm.coef_[0]
    norm = float(np.linalg.norm(coef))
    if not np.isfinite(norm) or norm == 0:
        raise BoundaryError("the SVM found no boundary (all samples have the same latent?)")
    return coef / norm, accuracy, len(y_train), len(y_test)


def sample_w(gen: OnnxGenerator, n: int, *, batch: int = 256) -> np.ndarray:
    """w of seeds 0..n-1 (untruncated): the population each direction's std is measured on."""
    return gen.w_of_seeds(range(n), batch=batch)


def check_layers(layers: tuple[int, int] | None, num_ws: int) -> tuple[int, int]:
    if layers is None:
        return 0, num_ws
    start, stop = layers
    if not 0 <= start < stop <= num_ws:
        raise BoundaryError(f"--layers {start}:{stop} is not inside [0, {num_ws}]")
    return int(start), int(stop)


def train_boundaries(
    gen: OnnxGenerator,
    w: np.ndarray,
    scores: np.ndarray,
    attributes: Sequence[str],
    *,
    names: Sequence[str] | None = None,
    layers: tuple[int, int] | None = None,
    source: str = "labels",
    options: BoundaryOptions = DEFAULT_OPTIONS,
) -> list[Boundary]:
    """One boundary per attribute column of ``scores`` [N, A], fit on ``w`` [N, w_dim]."""
    layers = check_layers(layers, gen.info.num_ws)
    names = list(names) if names else list(attributes)
    splits = [  # every column checked before any work
        split_labels(scores[:, j], fraction=options.fraction, where=f"{source}, column {attr!r}")
        for j, attr in enumerate(attributes)
    ]
    population = sample_w(gen, options.num_w_samples, batch=options.batch)
    out = []
    for (neg, pos), attr, name in zip(splits, attributes, names):
        normal, accuracy, n_train, n_test = fit_boundary(
            w, neg, pos, holdout=options.holdout, seed=options.seed
        )
        out.append(
            Boundary(
                name=name,
                attribute=attr,
                vector=normal,
                std=float(np.std(population @ normal)),
                layers=layers,
                accuracy=accuracy,
                train_samples=n_train,
                test_samples=n_test,
            )
        )
    return out


# --------------------------------------------------------------------------- metadata


def write_boundaries(repository: str | Path, model: str, boundaries: Sequence[Boundary]) -> Path:
    """Add (or replace) ``boundaries`` as directions of ``model`` in ``stylegate.json``,
    keeping everything else; atomic (a temp file then os.replace). Returns the file's path."""
    root = Path(repository)
    path = root / METADATA_FILE
    try:
        meta = json.loads(path.read_text())
        entry = meta["generators"][model]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BoundaryError(f"{path}: cannot update generator {model!r} ({exc!r})") from None
    directions = entry.setdefault("directions", {})
    for b in boundaries:
        old = directions.get(b.name)
        if old is not None and old.get("method") != METHOD:
            raise BoundaryError(
                f"direction {b.name!r} of {model!r} is a {old.get('method')} direction; "
                "choose another --name"
            )
    for b in boundaries:
        directions[b.name] = b.entry()
        attrs = entry.setdefault("attributes", [])
        if b.attribute not in attrs:
            attrs.append(b.attribute)
    fd, tmp = tempfile.mkstemp(prefix=".stylegate.", suffix=".json.tmp", dir=root)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(meta, indent=1) + "\n")
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_names(attributes: Sequence[str], name: str | None) -> list[str]:
    """Direction names: ``name`` for a single attribute, else the attribute names."""
    if not name:
        return list(attributes)
    if len(attributes) != 1:
        raise BoundaryError(
            f"--name applies to one attribute; there are {len(attributes)} "
            f"({','.join(attributes)}): their column names are used"
        )
    if not _NAME.match(name):
        raise BoundaryError(f"--name {name!r} is not valid (letters, digits, _ . -)")
    return [name]


# --------------------------------------------------------------------------- entry points


def train_from_labels(
    repository: str | Path,
    labels: str | Path,
    *,
    model: str = "",
    name: str | None = None,
    layers: tuple[int, int] | None = None,
    options: BoundaryOptions = DEFAULT_OPTIONS,
) -> tuple[str, list[Boundary], Path]:
    """Fit one boundary per attribute column of a labels CSV and write them into the
    repository. Returns (generator name, boundaries, stylegate.json path)."""
    gen = OnnxGenerator(repository, model)
    span = check_layers(layers, gen.info.num_ws)
    table = read_labels(labels, c_dim=gen.info.c_dim)
    names = check_names(table.attributes, name)
    w = latents_of(table, gen, span, batch=options.batch)
    found = train_boundaries(
        gen,
        w,
        table.scores,
        table.attributes,
        names=names,
        layers=span,
        source=str(table.path),
        options=options,
    )
    return gen.name, found, write_boundaries(repository, gen.name, found)


def train_from_classifier(
    repository: str | Path,
    classifier: str | Path,
    *,
    model: str = "",
    samples: int = 2_000,
    attributes: Sequence[str] = (),
    name: str | None = None,
    layers: tuple[int, int] | None = None,
    options: BoundaryOptions = DEFAULT_OPTIONS,
) -> tuple[str, list[Boundary], Path]:
    """Generate ``samples`` images, score them with the user's ONNX classifier, fit one
    boundary per output and write them into the repository (as train_from_labels)."""
    if samples < 10:
        raise BoundaryError(f"--samples {samples}: at least 10 are needed")
    gen = OnnxGenerator(repository, model)
    span = check_layers(layers, gen.info.num_ws)
    w, scores, attrs = classifier_scores(
        gen, classifier, samples, attributes=attributes, batch=min(64, options.batch)
    )
    names = check_names(attrs, name)
    found = train_boundaries(
        gen,
        w,
        scores,
        attrs,
        names=names,
        layers=span,
        source=str(classifier),
        options=options,
    )
    return gen.name, found, write_boundaries(repository, gen.name, found)

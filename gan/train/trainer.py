"""The one training loop. A recipe supplies networks, optimizers and one iteration's step; the
Trainer owns everything around it: threads and device, the run directory, resume and atomic
saves, the clock (time limit, save on a timer), progress, the learning-rate schedule and EMA.

Determinism is the Trainer's contract: iteration ``it`` draws its noise from a generator
seeded by (seed, it) and its data from the same pair, so a run interrupted and resumed gives
the same weights as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
import torch
from tqdm import tqdm

from stylegate.gan import checkpoint as ckpt
from stylegate.gan.train.common import prefetching


class ConfigError(ValueError):
    """A mistake in what the user asked for (the CLI prints it as one line)."""


@dataclasses.dataclass(frozen=True)
class Help:
    """What the CLI shows for a config field: ``name: Annotated[float, Help("...")] = 0.5``."""

    text: str
    choices: tuple[str, ...] | None = None  # a closed set of values
    exists: bool = True  # for paths: the file must exist (inputs)


# ---------------------------------------------------------------------------- what it owns


def cosine(progress: float, *, floor: float = 0.0) -> float:
    """Half a cosine from 1 at the start of a run to ``floor`` at its end."""
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclasses.dataclass
class Schedule:
    """One optimizer's learning rate: constant, or cosine-decayed to ``decay_to`` x ``lr``.
    Set before every step, so a resumed run takes the learning rate it is given now. ``lr``
    is one rate for every parameter group, or one per group."""

    opt: torch.optim.Optimizer
    lr: float | tuple[float, ...]
    decay_to: float | None = None  # None: constant

    def apply(self, progress: float) -> None:
        factor = 1.0 if self.decay_to is None else cosine(progress, floor=self.decay_to)
        groups = self.opt.param_groups
        rates = self.lr if isinstance(self.lr, tuple) else (self.lr,) * len(groups)
        for group, lr in zip(groups, rates, strict=True):
            group["lr"] = lr * factor


@dataclasses.dataclass
class EMA:
    """``target`` follows ``source`` with a half-life of ``kimg`` thousand images; parameters
    whose names start with one of ``copied`` are copied instead (trained elsewhere)."""

    source: torch.nn.Module
    target: torch.nn.Module
    kimg: float
    copied: tuple[str, ...] = ()


@torch.no_grad()
def ema_update(
    G_ema: torch.nn.Module, G: torch.nn.Module, beta: float, copied: tuple[str, ...] = ()
) -> None:
    """G_ema <- beta * G_ema + (1 - beta) * G for parameters; buffers (w_avg, noise) copied."""
    for (name, p_ema), p in zip(G_ema.named_parameters(), G.parameters()):
        if name.startswith(copied):
            p_ema.copy_(p)
        else:
            p_ema.lerp_(p, 1 - beta)
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


class Clock:
    """Decides when to save: every `every` seconds, and when the time budget runs out."""

    def __init__(self, every: float, minutes: float | None):
        self.every = every
        self.last = time.monotonic()
        self.deadline = None if minutes is None else time.monotonic() + minutes * 60

    def save_due(self) -> bool:
        if time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            return True
        return False

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def tick(self, save) -> bool:
        """Once per iteration: call ``save`` when one is due; True when the time is up (the
        loop then breaks and saves one last time)."""
        if self.save_due():
            save()
        return self.out_of_time()


def iteration_generator(seed: int, it: int) -> torch.Generator:
    """The noise of iteration ``it``: the global RNG (noise inputs) and a CPU generator for
    everything the step draws itself, both seeded from (seed, it)."""
    torch.manual_seed(seed * 1_000_003 + it)
    return torch.Generator().manual_seed(seed * 1_000_003 + it)


def save_grid(images: torch.Tensor, path: Path, nrow: int = 8) -> None:
    from PIL import Image

    x = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    n, h, w, c = x.shape
    rows = math.ceil(n / nrow)
    grid = np.zeros((rows * h, nrow * w, c), np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        grid[r * h : (r + 1) * h, col * w : (col + 1) * w] = x[i]
    Image.fromarray(grid).save(path)


# ---------------------------------------------------------------------------- the recipe side


class Recipe:
    """One training objective. A subclass sets, in ``__init__(cfg, *, device)``:

    - ``resumable``: name -> module or optimizer, saved in ``state.pt`` and loaded on resume;
    - ``schedules``: the learning rate of every optimizer (see ``Schedule``);
    - ``ema``: an ``EMA`` or None;
    - ``total``: iterations of the whole run;

    and implements ``step(it, gen) -> {loss name: float}``. Optional: ``extra_state`` (saved,
    not resumed: configs, derived forms), ``preview`` (a grid saved as progress.png) and
    ``pack`` (what ``ship`` writes from a run's state). ``Config`` is a keyword-only
    dataclass with ``seed`` and ``batch`` fields; its defaults are the CLI's defaults.
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    log_every: ClassVar[int] = 50  # iterations between log entries and progress updates

    resumable: dict[str, Any]
    schedules: list[Schedule]
    ema: EMA | None = None
    total: int

    def __init__(self, cfg: Any, *, device: torch.device):
        self.cfg = cfg
        self.device = device

    @classmethod
    def build(cls, cfg: Any, *, device: torch.device) -> Recipe:
        """The recipe that trains ``cfg`` (a recipe may hand its config to another one)."""
        return cls(cfg, device=device)

    @property
    def label(self) -> str:
        return self.name

    def step(self, it: int, gen: torch.Generator) -> dict[str, float]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {k: v.state_dict() for k, v in self.resumable.items()} | self.extra_state()

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in self.resumable.items():
            v.load_state_dict(state[k])

    def preview(self) -> torch.Tensor | None:
        return None

    @staticmethod
    def pack(state: dict[str, Any], shipped: dict[str, Any]) -> dict[str, Any]:
        """Add this recipe's shipped (fp16) entries, built from a run's ``state``, to
        ``shipped``."""
        raise NotImplementedError


def _plain(value: Any) -> Any:
    """A config value as ``torch.load(weights_only=True)`` reads it back."""
    return str(value) if isinstance(value, Path) else value


@dataclasses.dataclass(kw_only=True)
class Trainer:
    """Runs a recipe in a run directory; rerunning the same command resumes it."""

    run: Annotated[Path, Help("run directory (state.pt, progress.png)", exists=False)]
    device: Annotated[str, Help("where to train", choices=("cpu", "cuda"))] = "cpu"
    threads: Annotated[int | None, Help("torch intra-op threads (default: torch's choice)")] = None
    minutes: Annotated[float | None, Help("stop (and save) after this many minutes")] = None
    save_every: Annotated[float, Help("seconds between checkpoints")] = 120.0
    render_workers: Annotated[
        int,
        Help(
            "processes rendering the coming iterations' real images ahead (a GPU's loop"
            " outruns the one-core renderer); 0: rendered in the loop"
        ),
    ] = 0

    def __post_init__(self) -> None:
        self.run = Path(self.run)
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"--device {self.device}: CUDA is not available here")

    def fit(self, recipe_cls: type[Recipe], cfg: Any) -> dict[str, float]:
        """Train ``cfg`` with ``recipe_cls`` to its end or the time limit; returns the
        iterations reached, thousands of images shown and seconds taken."""
        if not isinstance(cfg, recipe_cls.Config):
            raise TypeError(f"{recipe_cls.__name__} trains a {recipe_cls.Config.__name__}")
        if self.threads:
            torch.set_num_threads(self.threads)
        device = torch.device(self.device)
        recipe = recipe_cls.build(cfg, device=device)
        batch, seed = recipe.cfg.batch, recipe.cfg.seed
        self.run.mkdir(parents=True, exist_ok=True)
        path = self.run / "state.pt"
        it, log = 0, []
        if path.exists():
            state = torch.load(path, map_location=device, weights_only=True)
            if state.get("recipe", recipe.name) != recipe.name:
                raise ConfigError(
                    f"{self.run} holds a {state['recipe']!r} run, not {recipe.name!r}: "
                    "pass another --run"
                )
            recipe.load_state_dict(state)
            it, log = state["it"], state.get("log", [])
            tqdm.write(f"resumed {self.run} at iteration {it} ({it * batch / 1000:.1f} kimg)")

        def save() -> None:
            config = {k: _plain(v) for k, v in dataclasses.asdict(recipe.cfg).items()}
            ckpt.atomic_save(
                {
                    **recipe.state_dict(),
                    "it": it,
                    "log": log,
                    "recipe": recipe.name,
                    "config": config,
                },
                path,
            )
            with torch.no_grad():
                grid = recipe.preview()
            if grid is not None:
                save_grid(grid.cpu(), self.run / "progress.png")

        clock = Clock(self.save_every, self.minutes)
        t0 = time.monotonic()
        bar = tqdm(total=recipe.total, initial=it, desc=recipe.label, unit="it", mininterval=5)
        with prefetching(self.render_workers):
            while it < recipe.total:
                for schedule in recipe.schedules:
                    schedule.apply(it / recipe.total)
                losses = recipe.step(it, iteration_generator(seed, it))
                if recipe.ema is not None:
                    beta = 0.5 ** (batch / (recipe.ema.kimg * 1000))
                    ema_update(recipe.ema.target, recipe.ema.source, beta, recipe.ema.copied)
                it += 1
                bar.update(1)
                if it % recipe.log_every == 0:
                    log.append({"it": it, **losses})
                    bar.set_postfix({k: f"{v:.4g}" for k, v in losses.items()})
                if clock.tick(save):
                    break
        bar.close()
        save()
        return {"iterations": it, "kimg": it * batch / 1000, "seconds": time.monotonic() - t0}

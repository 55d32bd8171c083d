"""Training: one loop (``Trainer``), many recipes.

The ``Trainer`` (trainer.py) owns what every run needs: torch threads and the device, the run
directory, resume and atomic saves of ``RUN/state.pt``, the clock (``--minutes`` limit, a save
every ``--save-every`` seconds), the progress bar and log, the learning-rate schedule and the
EMA. Each recipe is a small module that supplies its networks, optimizers and one iteration's
step, plus what ``ship`` packs from its run:

    classifier.py   the attribute classifier (its trunk is the perceptual feature network)
    autoencoder.py  base pretraining: autoencoder through W, mapping as a latent GAN
    gan.py          the adversarial loop (also ``transfer --adversarial`` and ``--init``)
    encoder.py      the domain-guided encoder (IDInvert objective)
    transfer.py     the woodblock model, fine-tuned on paired renders

From the shell (rerun the same command to resume; ``scripts/train-models.sh`` is the recipe
of the shipped checkpoints):

    python -m stylegate.gan.train classifier --run runs/classifier --iters 1500
    python -m stylegate.gan.train encoder --base checkpoints/base.pt \\
        --classifier checkpoints/classifier.pt --run runs/encoder
    python -m stylegate.gan.train ship --run runs/encoder --out checkpoints/base.pt

From Python:

    Trainer(run=Path("runs/gan"), threads=2).fit(Gan, GanConfig(kimg=10))

Adding a recipe (say ``imported_encoder``):

1. ``gan/train/imported_encoder.py``: a keyword-only dataclass ``ImportedEncoderConfig`` with
   ``seed``, ``batch`` and every hyperparameter as a field (its defaults are the CLI's; help
   text via ``hyper(default, "help")``), and a ``Recipe`` subclass with ``name``,
   ``Config``, and in ``__init__(cfg, *, device)`` its networks on ``device``,
   ``resumable`` (name -> module/optimizer), ``schedules``, ``ema`` (or None) and
   ``total``; then ``step(it, gen)`` returning named losses, and ``pack`` for ``ship``
   (``extra_state`` and ``preview`` if it has configs to save or pictures to show).
2. One entry in ``RECIPES`` (recipes.py): the CLI command, its options and ``ship`` follow.
3. A test in ``tests/test_gan_train_imported_encoder.py`` on a tiny config.

Draw randomness only from ``gen`` (or the global RNG, which the Trainer seeds per iteration)
and data from ``common.real_batch(seed, it, ...)``: then resume gives the same weights.
"""

from stylegate.gan.train.autoencoder import Autoencoder, AutoencoderConfig
from stylegate.gan.train.classifier import Classifier, ClassifierConfig
from stylegate.gan.train.common import recenter_encoder
from stylegate.gan.train.encoder import Encoder, EncoderConfig
from stylegate.gan.train.gan import Gan, GanConfig
from stylegate.gan.train.recipes import RECIPES
from stylegate.gan.train.trainer import ConfigError, Recipe, Trainer
from stylegate.gan.train.transfer import Transfer, TransferConfig

__all__ = [
    "RECIPES",
    "Autoencoder",
    "AutoencoderConfig",
    "Classifier",
    "ClassifierConfig",
    "ConfigError",
    "Encoder",
    "EncoderConfig",
    "Gan",
    "GanConfig",
    "Recipe",
    "Trainer",
    "Transfer",
    "TransferConfig",
    "recenter_encoder",
]

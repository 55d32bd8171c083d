"""Every recipe the trainer knows, by name: the CLI has one command per entry and ``ship``
finds a run's packer here. A new recipe is one line in this tuple."""

from __future__ import annotations

from stylegate.gan.train.autoencoder import Autoencoder
from stylegate.gan.train.classifier import Classifier
from stylegate.gan.train.encoder import Encoder
from stylegate.gan.train.gan import Gan
from stylegate.gan.train.imported_encoder import ImportedEncoder
from stylegate.gan.train.resample import Resample
from stylegate.gan.train.trainer import Recipe
from stylegate.gan.train.transfer import Transfer

RECIPES: dict[str, type[Recipe]] = {
    r.name: r for r in (Classifier, Autoencoder, Gan, Encoder, Transfer, ImportedEncoder, Resample)
}

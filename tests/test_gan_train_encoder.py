"""The IDInvert encoder recipe."""

import torch

from stylegate.gan import checkpoint as ckpt
from stylegate.gan import networks as N
from stylegate.gan.train import Encoder, EncoderConfig
from tests.support.gan_train import fit, state, tiny_base, tiny_classifier


def test_encoder_training_resumes_and_fits_its_generator(tmp_path):
    """The IDInvert encoder objective runs end to end on a tiny generator and resumes."""
    base, cls = tiny_base(tmp_path / "base.pt"), tiny_classifier(tmp_path / "cls.pt")
    kw = {"base": base, "classifier": cls, "batch": 4, "synthetic": 4}
    fit(tmp_path / "enc", Encoder, EncoderConfig(iters=2, **kw))
    fit(tmp_path / "enc", Encoder, EncoderConfig(iters=4, **kw))
    s = state(tmp_path / "enc")
    assert s["it"] == 4
    E = N.Encoder(**s["E_config"])
    E.load_state_dict(s["E"])
    assert E(torch.randn(2, 3, 16, 16)).shape == (2, 6, 32)  # the tiny G's num_ws, w_dim


def test_init_encoder_starts_from_another_checkpoints_encoder(tmp_path):
    """``--init-encoder`` fine-tunes that checkpoint's encoder, not the one the base ships."""
    base = tiny_base(tmp_path / "base.pt", encoder=True)
    other = tmp_path / "other.pt"
    src = ckpt.load(base)
    E = ckpt.encoder_from(src["encoder"])
    with torch.no_grad():
        for p in E.parameters():
            p.add_(torch.randn_like(p))
    ckpt.atomic_save({**src, "encoder": ckpt.pack_module(E)}, other)
    cls = tiny_classifier(tmp_path / "cls.pt")
    kw = {"base": base, "classifier": cls, "batch": 4, "synthetic": 4, "iters": 1}
    picked = Encoder(EncoderConfig(init_encoder=other, **kw), device=torch.device("cpu")).E
    default = Encoder(EncoderConfig(**kw), device=torch.device("cpu")).E
    want = ckpt.encoder_from(ckpt.load(other)["encoder"])
    trunk = [n for n, _ in want.named_parameters() if not n.startswith("out.")]
    assert trunk, "the encoder has a trunk outside its output layer"
    got, ref, alt = (dict(m.named_parameters()) for m in (picked, want, default))
    for name in trunk:  # recentring moves only the output layer's bias
        torch.testing.assert_close(got[name], ref[name])
    assert any(not torch.equal(got[n], alt[n]) for n in trunk)


def test_restyle_redraws_faces_reproducibly_within_range():
    """``common.restyle``: same shape and range, a change to every drawing it was given, and
    the same redrawing from the same generator state."""
    from stylegate.gan import data
    from stylegate.gan.train.common import restyle

    images, _, _ = data.render_batch(range(16), size=32)
    x = torch.from_numpy(data.to_tensor_range(images))
    a = restyle(x, torch.Generator().manual_seed(3))
    b = restyle(x, torch.Generator().manual_seed(3))
    c = restyle(x, torch.Generator().manual_seed(4))
    assert a.shape == x.shape and a.min() >= -1 and a.max() <= 1
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)
    changed = (a - x).abs().mean(dim=(1, 2, 3))
    assert (changed > 1e-3).all(), changed  # the palette alone moves every face


def test_restyled_renders_are_the_encoders_targets_and_d_keeps_the_renders(tmp_path):
    """With ``restyle`` the encoder reconstructs the redrawn faces (its pixel loss is against
    them), while the discriminator's real side stays the renderer's."""
    base, cls = tiny_base(tmp_path / "base.pt"), tiny_classifier(tmp_path / "cls.pt")
    kw = {"base": base, "classifier": cls, "batch": 4, "synthetic": 2, "iters": 1}
    seen = {}
    recipe = Encoder(EncoderConfig(restyle=0.5, adv_every=1, **kw), device=torch.device("cpu"))
    D_forward = recipe.D.forward

    def record(x):
        seen.setdefault("d", []).append(x.detach().clone())
        return D_forward(x)

    recipe.D.forward = record
    E_forward = recipe.E.forward

    def record_e(x):
        seen["e"] = x.detach().clone()
        return E_forward(x)

    recipe.E.forward = record_e
    from stylegate.gan.train.common import real_batch
    from stylegate.gan.train.trainer import iteration_generator

    recipe.step(0, iteration_generator(recipe.cfg.seed, 0))
    real, _, _ = real_batch(recipe.cfg.seed, 0, 4, size=16)
    encoded = seen["e"][:4]
    torch.testing.assert_close(encoded[:2], real[:2])  # two as rendered
    assert not torch.equal(encoded[2:], real[2:])  # two redrawn
    assert any(torch.equal(x, real) for x in seen["d"])  # D's real side: the renders


def test_patterned_renders_are_targets_and_d_keeps_the_plain_renders(tmp_path):
    """With ``backdrops`` the first share of the batch is the same faces in front of
    patterned backgrounds, what the encoder encodes; the discriminator sees them plain."""
    from stylegate.gan import data
    from stylegate.gan.train.common import batch_seeds, real_batch
    from stylegate.gan.train.trainer import iteration_generator

    base, cls = tiny_base(tmp_path / "base.pt"), tiny_classifier(tmp_path / "cls.pt")
    kw = {"base": base, "classifier": cls, "batch": 4, "synthetic": 2, "iters": 1}
    recipe = Encoder(EncoderConfig(backdrops=0.5, adv_every=1, **kw), device=torch.device("cpu"))
    seen: dict[str, list] = {"d": [], "e": []}
    for name, net in (("d", recipe.D), ("e", recipe.E)):
        forward = net.forward

        def record(x, forward=forward, name=name):
            seen[name].append(x.detach().clone())
            return forward(x)

        net.forward = record
    recipe.step(0, iteration_generator(recipe.cfg.seed, 0))
    seeds = batch_seeds(recipe.cfg.seed, 0, 4)
    images, _, _ = data.render_batch(seeds, size=16, patterned=[True, True, False, False])
    patterned = torch.from_numpy(data.to_tensor_range(images))
    plain, _, _ = real_batch(recipe.cfg.seed, 0, 4, size=16)
    encoded = seen["e"][0][:4]
    torch.testing.assert_close(encoded, patterned)
    assert not torch.equal(encoded[:2], plain[:2])
    assert any(torch.equal(x, plain) for x in seen["d"])
    assert not any(torch.equal(x, patterned) for x in seen["d"])

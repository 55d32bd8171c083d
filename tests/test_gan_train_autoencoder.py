"""The autoencoder pretraining recipe."""

import torch

from stylegate.gan import networks as N
from stylegate.gan.train import Autoencoder, AutoencoderConfig
from tests.support.gan_train import fit, state, tiny_classifier


def test_autoencoder_resumes_and_learns_to_reconstruct(tmp_path):
    """Autoencoder pretraining: resume gives the same weights, and a few dozen iterations
    already reconstruct better than the first ones."""
    cls = tiny_classifier(tmp_path / "cls.pt")
    kw = {"classifier": cls, "batch": 8, "resolution": 16, "latent_batch": 16, "buffer_size": 64}
    fit(tmp_path / "straight", Autoencoder, AutoencoderConfig(kimg=0.032, **kw))
    cfg = AutoencoderConfig(kimg=0.032, **kw)
    fit(tmp_path / "resumed", Autoencoder, cfg, minutes=0)  # stops after one iteration
    assert state(tmp_path / "resumed")["it"] == 1
    fit(tmp_path / "resumed", Autoencoder, cfg)
    a, b = state(tmp_path / "straight"), state(tmp_path / "resumed")
    assert a["it"] == b["it"] == 4
    for key in ("G", "E_train", "G_ema", "LD"):
        for name, t in a[key].items():
            assert torch.allclose(t, b[key][name], atol=1e-5), (key, name)
    long = fit(tmp_path / "long", Autoencoder, AutoencoderConfig(kimg=0.32, **kw))  # 40 its
    s = state(tmp_path / "long")
    log = s["log"]  # named losses every 20 iterations
    assert long["iterations"] == 40 and [e["it"] for e in log] == [20, 40]
    assert log[-1]["pix"] < log[0]["pix"]
    # the mapping network was trained (w_avg tracked) and the encoder is centred on it
    assert torch.allclose(s["E"]["w_avg"], s["G"]["mapping.w_avg"])
    assert s["G"]["mapping.w_avg"].abs().sum() > 0
    # G_ema's mapping is the latent GAN's own, not an average of it
    for name, t in s["G"].items():
        if name.startswith("mapping."):
            assert torch.equal(t, s["G_ema"][name]), name
    # the shipped encoder gives, at every layer, the mean code the training encoder gave
    trained, shipped = N.Encoder(**s["E_config"]), N.Encoder(**s["E_config"])
    trained.load_state_dict(s["E_train"]), shipped.load_state_dict(s["E"])
    x = torch.randn(3, 3, 16, 16)
    want = trained(x).mean(1, keepdim=True).expand(-1, trained.num_ws, -1)
    assert torch.allclose(shipped(x), want, atol=1e-5)


def test_autoencoder_continues_a_shipped_base_widened_with_an_adversarial_term(tmp_path):
    """``--init`` starts from the checkpoint's networks (the widened G draws what G drew) and
    ``--adv-weight`` trains D against the reconstructions."""
    from stylegate.gan import checkpoint as ckpt
    from stylegate.gan.train.trainer import ConfigError
    from tests.support.gan_train import tiny_base

    base = tiny_base(tmp_path / "base.pt", encoder=True)
    cls = tiny_classifier(tmp_path / "cls.pt")
    kw = {"classifier": cls, "batch": 4, "latent_batch": 8, "buffer_size": 16, "init": base}
    cfg = AutoencoderConfig(kimg=0.008, widen="16:24", adv_weight=0.1, adv_every=1, **kw)
    fit(tmp_path / "run", Autoencoder, cfg)
    s = state(tmp_path / "run")
    assert s["G_config"]["channels"][16] == 24 and s["it"] == 2
    before = ckpt.load(base)["D"]["state_dict"]
    assert any(not torch.allclose(t, before[k].float()) for k, t in s["D"].items())
    for bad, message in (("16:x", "RESOLUTION:CHANNELS"), ("16:8", "only grow")):
        try:
            Autoencoder(AutoencoderConfig(widen=bad, **kw), device=torch.device("cpu"))
        except ConfigError as err:
            assert message in str(err)
        else:
            raise AssertionError(f"--widen {bad} must be refused")


def test_adv_samples_puts_generated_samples_before_d_beside_the_reconstructions(tmp_path):
    """``--adv-samples N``: the adversarial term (G's and D's side) covers N samples of the
    mapping network as well as the batch's reconstructions."""
    from tests.support.gan_train import tiny_base

    base = tiny_base(tmp_path / "base.pt", encoder=True)
    cls = tiny_classifier(tmp_path / "cls.pt")
    kw = {"classifier": cls, "batch": 4, "latent_batch": 8, "buffer_size": 16, "init": base}
    seen = {}
    for n in (0, 3):
        cfg = AutoencoderConfig(kimg=0.004, adv_weight=0.1, adv_every=1, adv_samples=n, **kw)
        recipe = Autoencoder(cfg, device=torch.device("cpu"))
        seen[n] = []
        recipe.D.register_forward_hook(lambda m, args, out, n=n: seen[n].append(len(args[0])))
        recipe.step(1, torch.Generator().manual_seed(0))
    # G's term on the fakes, then D on the fakes and on the reals
    assert seen == {0: [4, 4, 4], 3: [7, 7, 4]}


def test_init_encoder_takes_the_encoder_from_another_checkpoint(tmp_path):
    """``--init-encoder``: G and D from --init, the encoder from the other checkpoint; without
    --init it is refused."""
    from stylegate.gan import checkpoint as ckpt
    from stylegate.gan.train.trainer import ConfigError
    from tests.support.gan_train import tiny_base

    base = tiny_base(tmp_path / "base.pt", encoder=True)
    other = ckpt.load(base)
    E = ckpt.encoder_from(other["encoder"])
    with torch.no_grad():
        for p in E.parameters():
            p.add_(0.5)
    other["encoder"] = ckpt.pack_module(E)
    ckpt.atomic_save(other, tmp_path / "other.pt")
    cls = tiny_classifier(tmp_path / "cls.pt")
    kw = {"classifier": cls, "batch": 4, "latent_batch": 8, "buffer_size": 16}
    cfg = AutoencoderConfig(init=base, init_encoder=tmp_path / "other.pt", **kw)
    recipe = Autoencoder(cfg, device=torch.device("cpu"))
    want = ckpt.encoder_from(other["encoder"]).state_dict()
    assert all(torch.equal(t, want[k]) for k, t in recipe.E.state_dict().items())
    try:
        Autoencoder(AutoencoderConfig(init_encoder=base, **kw), device=torch.device("cpu"))
    except ConfigError as err:
        assert "--init-encoder need" in str(err)
    else:
        raise AssertionError("--init-encoder without --init must be refused")

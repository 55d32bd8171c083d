"""The served networks as export-ready modules, one per signature in service/signatures.py.

Each wrapper's ``forward`` takes and returns exactly the tensors of its signature, in
order, so the ONNX exporter names them from the contract. The inversion step is the one
graph that needs care: its gradient is traced into a plain graph first (see
``InversionStep`` and docs/design.md, "Exporting the gradient graph to ONNX").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.fx.experimental.proxy_tensor import make_fx

from stylegate.gan import networks as N

aten = torch.ops.aten


# --------------------------------------------------------------------------- forward networks


class MappingModel(nn.Module):
    """z [B, z_dim] -> w [B, w_dim] (untruncated)."""

    def __init__(self, mapping: N.MappingNetwork):
        super().__init__()
        self.mapping = mapping

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.mapping(z, c)  # c: [B, c_dim] one-hot, conditional mappings only


def synthesize(
    synthesis: N.SynthesisNetwork, ws: torch.Tensor, noise_gain: torch.Tensor
) -> torch.Tensor:
    """``synthesis(ws, noise_mode="const")`` with each layer's constant noise scaled by a
    per-sample gain [B, 1] (1 = the model's constant noise, 0 = none).

    The same blocks and the same order of operations as ``SynthesisNetwork.forward`` on
    its default (non-fused) path; only the noise term differs, and parity tests pin it
    to the original at gains 1 and 0.
    """
    gain = noise_gain[:, :, None, None]  # [B, 1, 1, 1]

    def layer(lay: N.SynthesisLayer, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = lay.conv(x, w)
        noise = (lay.noise_const * lay.noise_strength)[None, None] * gain  # [B, 1, H, W]
        return N.lrelu(x + (lay.bias[None, :, None, None] + noise))

    x = img = None
    idx = 0
    for block in synthesis.blocks:
        i = idx
        if block.conv0 is None:
            x = block.const[None].expand(ws.shape[0], -1, -1, -1)
        else:
            x = layer(block.conv0, x, ws[:, i])
            i += 1
        x = layer(block.conv1, x, ws[:, i])
        y = block.torgb(x, ws[:, i + 1])
        img = y if img is None else block.upsample_image(img) + y
        idx += block.num_conv
    return img  # [B, 3, R, R]


class SynthesisModel(nn.Module):
    """ws [B, num_ws, w_dim], noise_gain [B, 1] -> image [B, 3, R, R]."""

    def __init__(self, synthesis: N.SynthesisNetwork):
        super().__init__()
        self.synthesis = synthesis

    def forward(self, ws: torch.Tensor, noise_gain: torch.Tensor) -> torch.Tensor:
        return synthesize(self.synthesis, ws, noise_gain)


class EncoderModel(nn.Module):
    """image [B, 3, R, R] -> ws [B, num_ws, w_dim]."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.encoder(image)


class FeaturesModel(nn.Module):
    """image [B, 3, R, R] -> features [B, C, Fr, Fr] (any module with ``features(img)``)."""

    def __init__(self, feature_net: nn.Module):
        super().__init__()
        self.net = feature_net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net.features(image)


# --------------------------------------------------------------------------- the inversion step


def masked_mean(sq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``sq`` [B, C, H, W] over the pixels where ``mask`` [B, 1, H, W] is set, per
    sample: sum(mask * sq) / (C * sum(mask)). An all-ones mask gives the plain mean; an
    all-zero mask gives 0."""
    c = sq.shape[1]
    num = (sq * mask).sum(dim=(1, 2, 3))
    den = mask.sum(dim=(1, 2, 3)) * c
    return num / den.clamp_min(1e-8)  # [B]


def downsample_mask(mask: torch.Tensor, size: int) -> torch.Tensor:
    """Area-average a [B, 1, R, R] mask to [B, 1, size, size] (R a multiple of size)."""
    r = mask.shape[-1]
    return F.avg_pool2d(mask, kernel_size=r // size) if r != size else mask


def inversion_objective(
    synthesis: N.SynthesisNetwork,
    encoder: nn.Module | None,  # None: no domain term (it is 0, the signature unchanged)
    feature_net: nn.Module,
    ws: torch.Tensor,  # [B, num_ws, w_dim]
    target: torch.Tensor,  # [B, 3, R, R]
    target_features: torch.Tensor,  # [B, C, Fr, Fr], Fr dividing R
    loss_weights: torch.Tensor,  # [B, 3]: pixel, feature, domain
    mask: torch.Tensor,  # [B, 1, R, R]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample loss [B], unweighted terms [B, 3] and the reconstruction G(ws)."""
    image = synthesize(synthesis, ws, torch.ones_like(ws[:, :1, 0]))
    pixel = masked_mean((image - target).square(), mask)
    feats = feature_net.features(image)
    feature = masked_mean(
        (feats - target_features).square(), downsample_mask(mask, feats.shape[-1])
    )
    if encoder is None:
        # An imported generator before `stylegate train encoder`: same outputs, domain 0
        # (written from ws so the batch size stays symbolic in the traced graph).
        domain = (ws * 0.0).sum(dim=(1, 2))
    else:
        domain = (ws - encoder(image)).square().mean(dim=(1, 2))
    terms = torch.stack([pixel, feature, domain], dim=1)  # [B, 3]
    loss = (terms * loss_weights).sum(dim=1)  # [B]
    return loss, terms, image


def _conv_backward(
    grad_output,
    input,
    weight,
    bias_sizes,
    stride,
    padding,
    dilation,
    transposed,
    output_padding,
    groups,
    output_mask,
):
    """``aten.convolution_backward`` for input gradients only, as a convolution of the other
    direction (the ONNX translator has no rule for convolution_backward).

    A stride-1 convolution's input gradient is a plain convolution with the kernel flipped
    and its input and output channels swapped (padding ``dilation * (k - 1) - padding``):
    onnxruntime runs Conv with its blocked NCHWc kernels and ConvTranspose without, 2-3x
    slower (docs/design.md, "The inversion step on onnxruntime"). A strided one is a
    transposed convolution, whose ``output_padding`` recovers the input size the forward
    rounded away; a transposed convolution's is a plain convolution."""
    if output_mask[1] or output_mask[2]:
        raise NotImplementedError(
            "export: the step graph needs no weight/bias gradient; freeze the parameters"
        )
    nd = len(stride)
    if transposed:
        grad_input = aten.convolution(
            grad_output, weight, None, stride, padding, dilation, False, [0] * nd, groups
        )
        return grad_input, None, None
    kernel = [int(k) for k in weight.shape[2:]]
    flipped_pad = [dilation[d] * (kernel[d] - 1) - padding[d] for d in range(nd)]
    if all(s == 1 for s in stride) and min(flipped_pad) >= 0:
        out_ch, in_per_group = int(weight.shape[0]), int(weight.shape[1])
        w = weight.flip(list(range(2, 2 + nd)))
        w = w.reshape(groups, out_ch // groups, in_per_group, *kernel).transpose(1, 2)
        w = w.reshape(groups * in_per_group, out_ch // groups, *kernel)
        grad_input = aten.convolution(
            grad_output, w, None, [1] * nd, flipped_pad, dilation, False, [0] * nd, groups
        )
        return grad_input, None, None
    out_pad = []
    for d in range(nd):
        size_in = input.shape[2 + d]
        size_out = grad_output.shape[2 + d]
        full = (size_out - 1) * stride[d] - 2 * padding[d] + dilation[d] * (kernel[d] - 1) + 1
        out_pad.append(int(size_in - full))
    grad_input = aten.convolution(
        grad_output, weight, None, stride, padding, dilation, True, out_pad, groups
    )
    return grad_input, None, None


def _leaky_relu_backward(grad_output, input, negative_slope, self_is_result):
    """The gradient as a product with a 0/1 mask: torch's own rule becomes an ONNX Where,
    which onnxruntime runs on one thread, several times slower than these multiplies."""
    keep = (input > 0).to(grad_output.dtype)
    return grad_output * (keep * (1.0 - negative_slope) + negative_slope)


STEP_DECOMPOSITIONS = {
    aten.convolution_backward.default: _conv_backward,
    aten.leaky_relu_backward.default: _leaky_relu_backward,
}


class InversionStep(nn.Module):
    """Eager reference of the step: the objective and torch autograd's gradient.
    ``encoder`` None (an imported generator without one yet): the domain term is 0."""

    def __init__(
        self, synthesis: N.SynthesisNetwork, encoder: nn.Module | None, feature_net: nn.Module
    ):
        super().__init__()
        self.synthesis = synthesis
        self.encoder = encoder
        self.feature_net = feature_net

    def forward(self, ws, target, target_features, loss_weights, mask):
        with torch.enable_grad():
            ws = ws.detach().requires_grad_(True)
            loss, terms, image = inversion_objective(
                self.synthesis,
                self.encoder,
                self.feature_net,
                ws,
                target,
                target_features,
                loss_weights,
                mask,
            )
            (grad,) = torch.autograd.grad(loss.sum(), ws)
        return loss.detach()[:, None], terms.detach(), grad, image.detach()


class TracedStep(nn.Module):
    """The step traced to a plain aten graph (forward and backward ops, no autograd), plus
    the parameters it reads, so that ``torch.onnx.export`` sees an ordinary module."""

    def __init__(self, step: InversionStep, example: tuple[torch.Tensor, ...]):
        super().__init__()
        named = {**dict(step.named_parameters()), **dict(step.named_buffers())}
        self._names = list(named)
        for i, t in enumerate(named.values()):
            self.register_buffer(f"t{i}", t.detach().clone())

        def flat(*args):
            tensors = dict(zip(self._names, args[: len(self._names)]))
            return torch.func.functional_call(step, tensors, args[len(self._names) :])

        with torch.no_grad():
            self.graph = make_fx(
                flat, decomposition_table=STEP_DECOMPOSITIONS, tracing_mode="symbolic"
            )(*[getattr(self, f"t{i}") for i in range(len(self._names))], *example)
        # Constants created inside the traced code (the blur taps of upsample2x) are plain
        # attributes of the graph module, which torch.export cannot follow into a submodule:
        # turn them into trailing graph inputs fed from this module's buffers.
        g = self.graph.graph
        last = [n for n in g.nodes if n.op == "placeholder"][-1]
        self._num_constants = 0
        for node in [n for n in g.nodes if n.op == "get_attr"]:
            value = getattr(self.graph, node.target)
            with g.inserting_after(last):
                ph = g.placeholder(f"constant{self._num_constants}")
            ph.meta = dict(node.meta)
            node.replace_all_uses_with(ph)
            g.erase_node(node)
            delattr(self.graph, node.target)
            self.register_buffer(f"c{self._num_constants}", value.detach().clone())
            self._num_constants += 1
            last = ph
        self.graph.recompile()
        self.eval()

    def forward(self, ws, target, target_features, loss_weights, mask):
        tensors = [getattr(self, f"t{i}") for i in range(len(self._names))]
        constants = [getattr(self, f"c{i}") for i in range(self._num_constants)]
        return tuple(
            self.graph(*tensors, ws, target, target_features, loss_weights, mask, *constants)
        )

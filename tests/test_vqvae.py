"""The VQ-VAE's quantizer: straight-through gradients, commitment and codebook losses, the EMA codebook update
against a hand computation, dead-code restarts, and the codebook-use figures."""

from __future__ import annotations

import math

import pytest
import torch

from genrun.nets.vq import VQVAE, VectorQuantizer, fraction_used, perplexity


def tiny_vqvae(**kwargs) -> VQVAE:
    torch.manual_seed(0)
    return VQVAE(channels=1, image_size=8, codebook_size=8, code_dim=4, width=8, downsamples=1, res_blocks=1,
                 **kwargs)


def test_straight_through_gradients_reach_the_encoder():
    net = tiny_vqvae().eval()  # eval: the codebook holds still, gradients flow as in training
    x = torch.rand(4, 1, 8, 8)
    decoded, q = net(x)
    # forward: the decoder sees the chosen codebook vectors (z + (e − z), up to rounding)
    assert torch.allclose(q.st, net.quantizer.lookup(q.codes), atol=1e-6)
    net.recon_loss(x, decoded).mean().backward()  # the reconstruction term alone: no commitment gradient
    grads = [p.grad for p in net.encoder.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
    # backward: the gradient at the quantized grid is passed to the encoder's output unchanged
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    upstream = torch.randn(2, 4, 3, 3)
    (net.quantizer(z).st * upstream).sum().backward()
    assert torch.allclose(z.grad, upstream)


def test_commitment_pulls_the_encoder_and_the_codebook_loss_only_the_codebook():
    quantizer = VectorQuantizer(4, 2, update="loss", restart_threshold=0.0)
    z = torch.randn(3, 2, 2, 2, requires_grad=True)
    q = quantizer(z)
    expected = (z - quantizer.lookup(q.codes)).pow(2).mean()
    assert q.commitment.item() == pytest.approx(expected.item()) == pytest.approx(q.codebook_loss.item())
    q.codebook_loss.backward()
    assert z.grad is None and quantizer.codebook.grad.abs().sum() > 0
    q.commitment.backward()
    assert z.grad.abs().sum() > 0


def test_ema_codebook_update_matches_a_hand_computation():
    gamma, eps = 0.5, 1e-5
    quantizer = VectorQuantizer(2, 2, update="ema", decay=gamma, eps=eps, restart_threshold=0.0)
    start = torch.tensor([[0.0, 0.0], [10.0, 10.0]])
    quantizer.codebook.copy_(start)
    quantizer.embed_sum.copy_(start)
    quantizer.cluster_size.fill_(1.0)
    # three vectors: two nearest code 0, one nearest code 1 (a 1x3 grid, D=2)
    vectors = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [9.0, 9.0]])
    q = quantizer.train()(vectors.t().reshape(1, 2, 1, 3))
    assert q.codes.flatten().tolist() == [0, 0, 1] and q.counts.tolist() == [2.0, 1.0]
    # N = γN + (1−γ)n; m = γm + (1−γ)Σz; e = m / N (Laplace-smoothed N)
    n = gamma * torch.tensor([1.0, 1.0]) + (1 - gamma) * torch.tensor([2.0, 1.0])
    m = gamma * start + (1 - gamma) * torch.tensor([[0.0, 2.0], [9.0, 9.0]])
    smoothed = (n + eps) / (n.sum() + 2 * eps) * n.sum()
    assert torch.allclose(quantizer.cluster_size, n)
    assert torch.allclose(quantizer.embed_sum, m)
    assert torch.allclose(quantizer.codebook, m / smoothed[:, None])
    assert torch.allclose(quantizer.codebook, torch.tensor([[0.0, 1 / 1.5], [9.5, 9.5]]), atol=1e-4)
    # evaluation never moves the codebook
    before = quantizer.codebook.clone()
    quantizer.eval()(vectors.t().reshape(1, 2, 1, 3))
    assert torch.equal(quantizer.codebook, before)


@pytest.mark.parametrize("update", ["ema", "loss"])
def test_dead_codes_restart_at_encoder_outputs(update):
    torch.manual_seed(0)
    quantizer = VectorQuantizer(4, 2, update=update, decay=0.9, restart_threshold=1.0)
    with torch.no_grad():
        quantizer.codebook.copy_(torch.tensor([[0.0, 0.0], [50.0, 50.0], [60.0, 60.0], [70.0, 70.0]]))
        if update == "ema":
            quantizer.embed_sum.copy_(quantizer.codebook)
    z = torch.randn(1, 2, 4, 4) * 0.1  # every vector is nearest code 0: codes 1-3 go unchosen
    q = quantizer.train()(z)
    assert q.counts.tolist() == [16.0, 0.0, 0.0, 0.0]
    vectors = z.permute(0, 2, 3, 1).reshape(-1, 2)
    for k in (1, 2, 3):  # restarted at one of this batch's encoder outputs each, and given time to be chosen
        assert (quantizer.codebook[k] == vectors).all(1).any(), k
        assert quantizer.usage[k] == 1.0
    assert len({tuple(quantizer.codebook[k].tolist()) for k in (1, 2, 3)}) == 3
    assert quantizer.usage[0] > 1.0 and quantizer.codebook[0].abs().max() < 1.0  # the used code was not moved
    # now the restarted codes are chosen
    assert (quantizer.eval()(z).counts[1:] > 0).all()


def test_restarts_land_where_the_codebook_is_thin():
    """A batch of mostly one repeated vector (a blank background) that code 0 already holds, and two others:
    the dead codes restart at the two others, never on the point the codebook covers."""
    torch.manual_seed(0)
    quantizer = VectorQuantizer(3, 2, decay=0.9, restart_threshold=1.0)
    with torch.no_grad():
        quantizer.codebook.copy_(torch.tensor([[0.0, 0.0], [50.0, 50.0], [60.0, 60.0]]))
        quantizer.embed_sum.copy_(quantizer.codebook)
        quantizer.cluster_size.fill_(1.0)
        quantizer.usage.copy_(torch.tensor([100.0, 0.0, 0.0]))
    flat = torch.zeros(30, 2)
    flat[7], flat[19] = torch.tensor([1.0, -2.0]), torch.tensor([-3.0, 0.5])
    restarted = quantizer.restart_dead(flat)
    assert restarted.tolist() == [1, 2]
    assert {tuple(quantizer.codebook[k].tolist()) for k in (1, 2)} == {(1.0, -2.0), (-3.0, 0.5)}


def test_without_restarts_unused_codes_stay():
    quantizer = VectorQuantizer(4, 2, decay=0.9, restart_threshold=0.0)
    before = quantizer.codebook.clone()
    quantizer.train()(before[0].view(1, 2, 1, 1).repeat(1, 1, 2, 2))
    assert torch.allclose(quantizer.codebook[1:], before[1:])


def test_codebook_use_figures():
    assert perplexity(torch.ones(16)) == pytest.approx(16.0)
    assert perplexity(torch.tensor([5.0, 0.0, 0.0, 0.0])) == pytest.approx(1.0)
    assert perplexity(torch.tensor([1.0, 1.0, 2.0, 0.0])) == pytest.approx(math.exp(1.5 * math.log(2)))
    assert fraction_used(torch.tensor([3.0, 0.0, 1.0, 0.0])) == 0.5


def test_the_net_rebuilds_from_its_recorded_arguments():
    net = tiny_vqvae(codebook_update="loss")
    rebuilt = VQVAE(**net.init_config)
    rebuilt.load_state_dict(net.state_dict())
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(net.codes(x), rebuilt.codes(x)) and net.codes(x).shape == (2, 4, 4)
    assert net.latent_dim == 4 * 4 * 4 and net.encode(x)[0].shape == (2, 64)
    # the vector-latent interface (latent diffusion) decodes as the code path does
    net.eval()
    assert torch.allclose(net.decode(net.encode(x)[0]), net.decode_codes(net.codes(x)))


@pytest.mark.parametrize("kwargs, message", [
    ({"codebook_update": "kmeans"}, "codebook_update 'kmeans'"),
    ({"codebook_size": 0}, "codebook_size must be at least 1"),
    ({"image_size": 10, "downsamples": 2}, "image_size 10 cannot be halved"),
])
def test_bad_arguments_are_named(kwargs, message):
    settings = {"channels": 1, "image_size": 8, **kwargs}
    with pytest.raises(ValueError, match=message):
        VQVAE(**settings)

"""The torch module of NISCA and VASCA: encoder, decoder and the negative ELBO (MODEL.md section 2).

    encoder  x -> (mu, s) in R^{K-1}        an MLP with a softplus scale head
    sample   u = mu + s * eps, z = softmax([u, 0])
    decoder  z -> f(A z)                      A: linear K -> N without bias; f: ChannelwiseMLP (NISCA)
                                              or the identity (VASCA)
    loss     mean_r [ sum_n (x_n - f_n(A z_r))^2 / (2 s2_n) + (1/2) sum_n log(2 pi s2_n) + log q(z_r|x)
                      - log p(z_r) ]

The loss is the per-pixel negative ELBO in nats. With the flat Dirichlet(1) prior (MODEL.md, the default
`prior="flat"`) log p(z) is a constant and is dropped. `prior="learn"` puts a Dirichlet(alpha) prior on z
and learns alpha (K concentrations) by the ELBO: empirical Bayes, blind to the truth. It suits scenes
where most pixels are pure (it improved VASCA on the DCE phantom) and hurts on Dirichlet(1) data, where
alpha drifts above 1 to suit the logistic-normal posterior (docs/results.md). The noise variance s2 is
fixed, or learned as one value or one per channel (`learn_noise`, `noise_per_channel`). For
a fixed s2 it is MODEL.md's loss divided by 2*s2 plus a constant, so both have the same minimiser, and
with s2 learned it is the un-scaled negative ELBO. The module works on scaled data x = (Y - offset) /
scale; `offset` and `scale` are buffers, so a checkpoint is self-contained.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from nisca.models.layers import MLP, ChannelwiseMLP
from nisca.models.simplex import (
    additive_logistic,
    log_additive_logistic,
    logistic_normal_log_density,
    sample_logits,
)

MIN_SCALE = 1e-4  # floor of the posterior scale s(x)


class VariationalSimplexModule(nn.Module):
    """Logistic-normal encoder + post-nonlinear (or linear) decoder; computes the loss and the estimates."""

    def __init__(
        self,
        n_channels: int,
        latent_dim: int,
        encoder_hidden: Sequence[int] = (128, 128),
        nonlinearity: nn.Module | None = None,
        noise_variance: torch.Tensor | float = 1.0,
        learn_noise: bool = False,
        noise_per_channel: bool = False,
        offset: torch.Tensor | None = None,
        scale: torch.Tensor | None = None,
        learn_prior: bool = False,
    ) -> None:
        super().__init__()
        self.n_channels, self.latent_dim = int(n_channels), int(latent_dim)
        N, K = self.n_channels, self.latent_dim
        self.encoder = MLP(N, 2 * (K - 1), tuple(encoder_hidden))
        self.mixing = nn.Linear(K, N, bias=False)
        self.nonlinearity = nonlinearity if nonlinearity is not None else nn.Identity()
        variance = torch.as_tensor(noise_variance, dtype=torch.float32).reshape(-1).expand(N).clone()
        self.learn_noise = bool(learn_noise)
        if self.learn_noise:  # one s2 for all (scaled) channels, or one per channel
            start = torch.log(variance) if noise_per_channel else torch.log(variance.mean()).reshape(1)
            self.log_noise_variance = nn.Parameter(start)
        else:
            self.register_buffer("fixed_noise_variance", variance)
        self.learn_prior = bool(learn_prior)
        if self.learn_prior:  # log alpha, one per component; alpha = 1 (flat) at the start
            self.log_concentration = nn.Parameter(torch.zeros(K))
        self.register_buffer("offset", torch.zeros(N) if offset is None else torch.as_tensor(offset).float())
        self.register_buffer("scale", torch.ones(N) if scale is None else torch.as_tensor(scale).float())

    # -- the model ------------------------------------------------------------------------------------
    def noise_variance(self) -> torch.Tensor:
        """s2 per channel (N,), in scaled units."""
        if self.learn_noise:
            return torch.exp(self.log_noise_variance).expand(self.n_channels)
        return self.fixed_noise_variance

    def concentration(self) -> torch.Tensor:
        """The Dirichlet prior's alpha (K,): learned, or all ones for the flat prior."""
        if self.learn_prior:
            return torch.exp(self.log_concentration)
        return torch.ones(self.latent_dim, device=self.offset.device)

    def log_prior(self, u: torch.Tensor) -> torch.Tensor:
        """log Dirichlet(z; alpha) at z = softmax([u, 0]) (on z's first K-1 coordinates); 0 when flat."""
        if not self.learn_prior:
            return torch.zeros(u.shape[:-1], device=u.device)
        alpha = self.concentration()
        log_norm = torch.lgamma(alpha.sum()) - torch.lgamma(alpha).sum()
        return log_norm + ((alpha - 1.0) * log_additive_logistic(u)).sum(-1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mu and s (both (batch, K-1)) of the logistic-normal posterior q(z|x)."""
        head = self.encoder(x)
        mu, raw_scale = head.split(self.latent_dim - 1, dim=-1)
        return mu, F.softplus(raw_scale) + MIN_SCALE

    def linear(self, z: torch.Tensor) -> torch.Tensor:
        """A z: the linear mixture before the nonlinearity."""
        return self.mixing(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """f(A z) for z (..., K) -> (..., N) in scaled units."""
        y = self.mixing(z)
        shape = y.shape
        return self.nonlinearity(y.reshape(-1, self.n_channels)).reshape(shape)

    def loss(self, x: torch.Tensor, n_samples: int = 1) -> dict[str, torch.Tensor]:
        """Per-pixel negative ELBO averaged over the batch, with its two parts (for logging)."""
        mu, scale = self.encode(x)
        u = sample_logits(mu, scale, n_samples)  # (R, batch, K-1)
        z = additive_logistic(u)
        x_hat = self.decode(z).float()
        s2 = self.noise_variance().float()
        squared = (x.float() - x_hat).pow(2)  # (R, batch, N)
        nll = 0.5 * (squared / s2).sum(-1) + 0.5 * torch.log(2 * math.pi * s2).sum()
        log_q = logistic_normal_log_density(u.float(), mu.float(), scale.float())
        reconstruction = nll.mean()
        log_posterior = log_q.mean()
        # the flat prior's log density is a constant: nothing to compute per sample on the training path
        log_prior = self.log_prior(u.float()).mean() if self.learn_prior else reconstruction.new_zeros(())
        return {
            "loss": reconstruction + log_posterior - log_prior,
            "nll": reconstruction,
            "log_q": log_posterior,
            "log_prior": log_prior,
            "mse": squared.mean(),
        }

    # -- estimates ------------------------------------------------------------------------------------
    @torch.no_grad()
    def posterior(
        self, x: torch.Tensor, n_samples: int, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Posterior mean of z (MC over n_samples), softmax([mu, 0]), and the decoded mean, for scaled x."""
        mu, scale = self.encode(x)
        u = sample_logits(mu, scale, n_samples, generator=generator)
        mean = additive_logistic(u).float().mean(0)
        mean = mean / mean.sum(-1, keepdim=True)
        linear = self.linear(mean)
        return {
            "abundances": mean,
            "abundances_mode": additive_logistic(mu).float(),
            "linear_mixture": linear.float(),
            "reconstruction": self.unscale(self.nonlinearity(linear).float()),
        }

    def unscale(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.offset

    @torch.no_grad()
    def endmembers(self) -> torch.Tensor:
        """f(A e_k) in data units, (N, K)."""
        eye = torch.eye(self.latent_dim, device=self.offset.device)
        return self.unscale(self.decode(eye).float()).T

    @torch.no_grad()
    def curves(self, low: torch.Tensor, high: torch.Tensor, n_points: int = 200) -> dict[str, torch.Tensor]:
        """f_n on a grid over [low_n, high_n] of each channel's linear input; outputs in data units."""
        steps = torch.linspace(0.0, 1.0, n_points, device=low.device).unsqueeze(1)
        inputs = low + steps * (high - low)  # (M, N)
        return {"inputs": inputs, "outputs": self.unscale(self.nonlinearity(inputs).float())}

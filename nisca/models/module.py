"""The torch module of NISCA and VASCA: encoder, decoder and the loss (MODEL.md section 2).

    encoder  x -> (mu, s) in R^{K-1}        an MLP with a softplus scale head
    sample   u = mu + s * eps, z = softmax([u, 0])
    decoder  z -> f(A z)                      A: linear K -> N without bias; f: ChannelwiseMLP (NISCA)
                                              or the identity (VASCA)
    weight   log w_r = log p(x | z_r) + log p(z_r) - log q(z_r | x)
             = -[ sum_n (x_n - f_n(A z_r))^2 / (2 s2_n) + (1/2) sum_n log(2 pi s2_n) ] + log p(z_r) - log q(z_r|x)
    loss     'elbo':  -mean_r log w_r                         (the negative ELBO, MODEL.md)
             'iwae':  -log( (1/R) sum_r w_r )                 (the importance-weighted bound, Burda et al. 2016)

The loss is per pixel, in nats. Both objectives bound -log p(x) from above; the IWAE bound is the tighter
one (it tends to -log p(x) as R grows), so the decoder is less pulled towards solutions whose posterior
happens to be logistic-normal. That pull is what distorts the fractions of pixels near the simplex's
faces, where the true posterior is skewed (docs/dce.md, fourth round). With 'iwae' q is a proposal, and
the abundances are the posterior mean estimated by self-normalised importance sampling. The module's own
default is 'elbo' (MODEL.md; checkpoints written before the option); the configs default to 'iwae'.

With the flat Dirichlet(1) prior (MODEL.md, the default `prior="flat"`) log p(z) is a constant and is
dropped. `prior="learn"` puts a Dirichlet(alpha) prior on z and learns alpha (K concentrations) with the
rest of the model: empirical Bayes, blind to the truth. It suits scenes where most pixels are pure (the
DCE phantom) and hurts on Dirichlet(1) data, where alpha drifts above 1 to suit the logistic-normal
posterior (docs/results.md). The noise variance s2 is fixed, or learned as one value or one per channel
(`learn_noise`, `noise_per_channel`). For a fixed s2 the 'elbo' loss is MODEL.md's loss divided by 2*s2
plus a constant, so both have the same minimiser, and with s2 learned it is the un-scaled negative ELBO.
The module works on scaled data x = (Y - offset) / scale; `offset` and `scale` are buffers, so a
checkpoint is self-contained.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from nisca.models.lattice import (
    TRAINING_LATTICE_POINTS,
    default_resolution,
    lattice_posterior,
    pairwise_log_likelihoods,
    simplex_lattice,
)
from nisca.models.layers import MLP, ChannelwiseMLP
from nisca.models.simplex import (
    additive_logistic,
    log_additive_logistic,
    logistic_normal_log_density,
    sample_logits,
)

MIN_SCALE = 1e-4  # floor of the posterior scale s(x)
OBJECTIVES = ("elbo", "iwae", "lattice")
DECODE_BUDGET = 1 << 20  # (samples x pixels x channels) decoded at once when weighting posterior samples


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
        objective: str = "elbo",
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
        self.set_objective(objective)
        self.learn_prior = bool(learn_prior)
        if self.learn_prior:  # log alpha, one per component; alpha = 1 (flat) at the start
            self.log_concentration = nn.Parameter(torch.zeros(K))
        self.register_buffer("offset", torch.zeros(N) if offset is None else torch.as_tensor(offset).float())
        self.register_buffer("scale", torch.ones(N) if scale is None else torch.as_tensor(scale).float())

    def set_objective(self, objective: str) -> None:
        """Train on `objective` from now on: the constructor's choice, or 'lattice' for the exact
        maximum-likelihood refinement that follows an IWAE training (`refine_epochs`)."""
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        self.objective = objective
        if objective == "lattice" and not hasattr(self, "training_lattice"):  # from K: not in checkpoints
            resolution = default_resolution(self.latent_dim, TRAINING_LATTICE_POINTS, setting="objective")
            lattice = simplex_lattice(self.latent_dim, resolution, device=self.mixing.weight.device)
            self.register_buffer("training_lattice", lattice, persistent=False)

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

    def log_weights(self, x: torch.Tensor, u: torch.Tensor, mu: torch.Tensor,
                    scale: torch.Tensor) -> dict[str, torch.Tensor]:
        """log w = log p(x|z) + log p(z) - log q(z|x) at z = softmax([u, 0]) for draws u (R, batch, K-1)
        of q = logistic-normal(mu, scale); returns it with its parts, each (R, batch)."""
        x_hat = self.decode(additive_logistic(u)).float()
        s2 = self.noise_variance().float()
        squared = (x.float() - x_hat).pow(2)  # (R, batch, N)
        nll = 0.5 * (squared / s2).sum(-1) + 0.5 * torch.log(2 * math.pi * s2).sum()
        log_q = logistic_normal_log_density(u.float(), mu.float(), scale.float())
        # the flat prior's log density is a constant: nothing to compute per sample on the training path
        log_prior = self.log_prior(u.float()) if self.learn_prior else torch.zeros_like(nll)
        return {"log_w": log_prior - nll - log_q, "nll": nll, "log_q": log_q, "log_prior": log_prior,
                "squared": squared}

    def loss(self, x: torch.Tensor, n_samples: int = 1) -> dict[str, torch.Tensor]:
        """Per-pixel loss (negative ELBO, IWAE bound or exact log-likelihood, by `objective`) averaged over
        the batch, with its parts (for logging)."""
        if self.objective == "lattice":
            return self._lattice_loss(x)
        mu, scale = self.encode(x)
        parts = self.log_weights(x, sample_logits(mu, scale, n_samples), mu, scale)  # each (R, batch)
        if self.objective == "iwae":
            bound = torch.logsumexp(parts["log_w"], dim=0) - math.log(n_samples)
        else:
            bound = parts["log_w"].mean(0)
        return {
            "loss": -bound.mean(),
            "nll": parts["nll"].mean(),
            "log_q": parts["log_q"].mean(),
            "log_prior": parts["log_prior"].mean(),
            "mse": parts["squared"].mean(),
        }

    def _lattice_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """-log p(x) with z integrated out exactly over the training lattice (flat prior): maximum
        likelihood for A, f and s2, with no encoder in the loop (it is not trained under this objective)."""
        lattice = self.training_lattice
        # one batch is one chunk: (pixels, lattice points) log N(x; f(A g), s2), computed once for both uses
        chunks = list(pairwise_log_likelihoods(x, self.decode(lattice), self.noise_variance(), dtype=torch.float32))
        scores, offsets = torch.cat([s for s, _ in chunks]), torch.cat([o for _, o in chunks])
        nll = math.log(len(lattice)) - torch.logsumexp(scores, dim=1) - offsets
        with torch.no_grad():  # for the logs: the reconstruction error at the posterior mean
            z = torch.softmax(scores, dim=1) @ lattice
            mse = (x - self.decode(z)).pow(2).mean()
        zero = torch.zeros((), device=x.device)
        return {"loss": nll.mean(), "nll": nll.mean(), "log_q": zero, "log_prior": zero, "mse": mse}

    # -- estimates ------------------------------------------------------------------------------------
    @torch.no_grad()
    def posterior(
        self, x: torch.Tensor, n_samples: int, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Posterior mean of z (MC over n_samples), softmax([mu, 0]), and the decoded mean, for scaled x.
        With the 'elbo' objective the mean is q's; with 'iwae' the samples of q are weighted by w (self-
        normalised importance sampling), which estimates the model's posterior mean."""
        mu, scale = self.encode(x)
        u = sample_logits(mu, scale, n_samples, generator=generator)
        z = additive_logistic(u).float()
        if self.objective == "iwae":
            weights = torch.softmax(self._sample_log_weights(x, u, mu, scale), dim=0)  # (R, batch)
            mean = (weights.unsqueeze(-1) * z).sum(0)
        else:
            mean = z.mean(0)
        return self._estimates(mean / mean.sum(-1, keepdim=True), additive_logistic(mu).float())

    @torch.no_grad()
    def lattice_means(self, lattice: torch.Tensor) -> torch.Tensor:
        """f(A g) for every lattice point g (points, K) -> (points, N), a bounded number of rows at a time."""
        step = max(1, DECODE_BUDGET // max(1, self.n_channels))
        return torch.cat([self.decode(lattice[i : i + step].float()).float() for i in range(0, len(lattice), step)])

    @torch.no_grad()
    def lattice_means_in_data_units(self, lattice: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(f(A g) for every lattice point, s2 per channel), both unscaled to the data's units (float64),
        so that log-likelihoods compare across decoders and with linear models fitted to the raw data."""
        scale, offset = self.scale.double(), self.offset.double()
        return self.lattice_means(lattice).double() * scale + offset, self.noise_variance().double() * scale**2

    @torch.no_grad()
    def posterior_on_lattice(self, x: torch.Tensor, lattice: torch.Tensor, means: torch.Tensor) -> dict[str, torch.Tensor]:
        """The estimates of `posterior`, with the abundances the exact posterior mean on a simplex lattice
        (nisca.models.lattice) instead of a Monte Carlo average; `means` = lattice_means(lattice)."""
        log_prior = None
        if self.learn_prior:
            alpha = self.concentration().double()
            log_prior = ((alpha - 1.0) * torch.log(lattice.double())).sum(-1)
        posterior = lattice_posterior(x, means, self.noise_variance(), lattice, log_prior)
        mean = posterior["mean"].float()
        # softmax([mu, 0]) where an encoder was trained; under objective 'lattice' the lattice's mode
        mode = posterior["mode"].float() if self.objective == "lattice" else additive_logistic(self.encode(x)[0]).float()
        return self._estimates(mean / mean.sum(-1, keepdim=True), mode)

    def _estimates(self, mean: torch.Tensor, mode: torch.Tensor) -> dict[str, torch.Tensor]:
        """The posterior-mean abundances with a point estimate (softmax([mu, 0]), or the lattice's
        posterior mode), A z and the decoded reconstruction."""
        linear = self.linear(mean)
        return {
            "abundances": mean,
            "abundances_mode": mode,
            "linear_mixture": linear.float(),
            "reconstruction": self.unscale(self.nonlinearity(linear).float()),
        }

    def _sample_log_weights(self, x: torch.Tensor, u: torch.Tensor, mu: torch.Tensor,
                            scale: torch.Tensor) -> torch.Tensor:
        """log w for every draw in u (R, batch, K-1), decoding a bounded number of rows at a time."""
        step = max(1, DECODE_BUDGET // max(1, x.shape[0] * self.n_channels))
        return torch.cat([self.log_weights(x, u[i : i + step], mu, scale)["log_w"]
                          for i in range(0, u.shape[0], step)])

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

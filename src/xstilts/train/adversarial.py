"""Training objectives for one micro-batch: standard, or adversarial in embedding space.

The loop hands every micro-batch to its task's objective (``Objective.step``), which
runs the forward and backward passes it needs and returns the terms to log. All
perturbations go through one seam, ``EmbeddingPerturbation``: a forward hook on the
encoder's input-embedding layer that adds a tensor to its output, one per call of
that layer in a forward pass (a dual encoder calls it twice), on real tokens only
(never padding or special tokens). Formats take part in one way only: they say which
distributions of their outputs the smoothness regularisers compare
(``TaskFormat.distributions``).

Methods, each by default as its paper has it (defaults in
``config.ADVERSARIAL_OPTIONS``; README "Adversarial training" lists the options that
differ):

- ``fgm`` (Miyato et al. 2017): the clean loss, plus the loss at the perturbation
  ``epsilon * g / ||g||_2`` along the clean loss's embedding gradient.
- ``pgd`` (Madry et al. 2018): a random start in the ``epsilon`` ball, ``steps``
  projected ascent steps of ``step_size`` (L2: along g / ||g||_2; L-inf: along
  sign(g)), trained on the loss at the end point only (``adversarial_loss``).
- ``freelb`` (Zhu et al. 2020): ``steps`` forward passes at successive perturbations
  (random start of ``init_magnitude``) under one dropout mask (``dropout: fixed``);
  each pass's parameter gradients are accumulated at weight 1/steps, and the
  perturbation ascends between passes, projected onto the ``epsilon`` ball unless
  ``epsilon`` is 0.
- ``smart`` (Jiang et al. 2020, Algorithm 1): the loss plus ``lambda`` times the
  symmetric KL between clean and perturbed outputs, the perturbation starting from
  N(0, sigma^2) and taking ``steps`` ascent steps of ``step_size`` along the gradient
  over its L-inf norm (per token, as the reference code, or per example), projected
  onto the L-inf ball of radius ``epsilon``; plus ``mu`` times the Bregman proximal
  point term, the symmetric KL to a momentum teacher whose momentum is ``beta_early``
  for the first ``beta_early_fraction`` of updates and ``beta`` after.
- ``r3f`` (Aghajanyan et al. 2021): the loss plus ``lambda`` times the symmetric KL
  between clean outputs and outputs under normal or uniform noise of scale
  ``sigma``; no ascent.

Precision: perturbations and noise are float32 tensors, divergences are computed in
float32, and with ``precision: float32`` (the default) a method's forward passes run
in float32 too, whatever the run's mixed precision: a perturbation of 1e-5 is below
the resolution of bf16 activations, and under autocast it would be rounded away
(SMART's and R3F's regularisers then measure rounding, not smoothness).

Randomness comes from a generator the loop seeds with (seed, step, micro-batch), so a
resumed run draws the same perturbations.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from xstilts.config import ADVERSARIAL_OPTIONS, AdversarialConfig
from xstilts.formats.base import Outputs
from xstilts.modeling import float32_forward

TINY = 1e-12  # keeps normalisations finite on an all-zero gradient
SMART_EPSILON = 1e-6
"""Added to SMART's gradient norm as its reference code does: at zero noise the
gradient is zero up to rounding, and the step stays negligible instead of unit-sized."""


@dataclass
class MicroBatch:
    """One micro-batch as the loop runs it: the objective's view of the model."""

    forward: Callable[[], Outputs]
    """Runs the model on the batch (through the accelerator's wrapper)."""
    forward_with: Callable[[nn.Module], Outputs]
    """Runs another copy of the model (SMART's teacher) on the batch."""
    loss: Callable[[Outputs], torch.Tensor]
    distributions: Callable[[Outputs], list[torch.Tensor]]
    backward: Callable[[torch.Tensor], None]
    scale: float
    """1 / gradient accumulation steps."""
    seam: EmbeddingPerturbation
    generator: torch.Generator


Terms = dict[str, torch.Tensor]
"""What a step reports, per micro-batch and unscaled, as detached device scalars (the
loop reads them once per logging interval, not once per step): ``loss`` (the task
loss on clean inputs, where the method computes it) and the method's terms
(``adversarial_loss``, ``regulariser``, ``proximal``, ``perturbation_norm``). The term
named by the objective's ``trained_term`` is always there."""


# ---------------------------------------------------------------------------
# The seam: a hook on the input-embedding layer

Init = Callable[[torch.Tensor, torch.Size], torch.Tensor]
"""Makes a delta from the mask of real tokens ([rows, tokens, 1]) and the layer's
output shape ([rows, tokens, hidden])."""


def zeros(mask: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    return torch.zeros(shape, device=mask.device, dtype=torch.float32)


class EmbeddingPerturbation:
    """Adds ``deltas[i]`` to the output of the i-th call of the input-embedding layer
    in a forward pass, on real tokens only. A delta is made by ``init`` the first time
    its call happens and kept for the following passes."""

    def __init__(self, embedding: nn.Module, special_ids: Sequence[int]) -> None:
        self.embedding = embedding
        self.special_ids = torch.tensor(sorted(set(special_ids)), dtype=torch.long)
        self.deltas: list[torch.Tensor] = []
        self.masks: list[torch.Tensor] = []
        self._init: Init | None = None
        self._track = False
        self._call = 0

    @contextmanager
    def active(self, init: Init, track_grad: bool = False) -> Iterator[EmbeddingPerturbation]:
        """Perturb every forward pass run inside; with ``track_grad`` each delta is a
        leaf tensor that receives its gradient."""
        self.deltas, self.masks, self._init, self._track = [], [], init, track_grad
        self._call = 0
        handle = self.embedding.register_forward_hook(self._hook)
        try:
            yield self
        finally:
            handle.remove()
            self.deltas, self.masks, self._init = [], [], None

    @property
    def device(self) -> torch.device:
        return next(self.embedding.parameters()).device

    def new_pass(self) -> None:
        """Call before each forward pass: the next call is the first again."""
        self._call = 0

    def _hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        index, self._call = self._call, self._call + 1
        if index == len(self.deltas):
            assert self._init is not None
            ids = inputs[0]
            real = ~torch.isin(ids, self.special_ids.to(ids.device))
            mask = real.unsqueeze(-1).float()
            self.masks.append(mask)
            self.deltas.append(self._leaf(self._init(mask, output.shape) * mask))
        # Times the mask again: gradients never flow to padding or special tokens. The
        # sum is taken in float32 (the delta's dtype) before any cast to the output's.
        return (output + self.deltas[index] * self.masks[index]).to(output.dtype)

    def _leaf(self, delta: torch.Tensor) -> torch.Tensor:
        delta = delta.detach()
        return delta.requires_grad_(True) if self._track else delta

    def replace(self, deltas: list[torch.Tensor]) -> None:
        """New deltas for the next pass (masked; leaves again if gradients are tracked)."""
        self.deltas = [
            self._leaf(delta * mask) for delta, mask in zip(deltas, self.masks, strict=True)
        ]

    def mean_norm(self) -> torch.Tensor:
        """Mean L2 norm of a row's perturbation, over the rows of every call (a device
        scalar: the loop reads it with the other terms)."""
        norms = [row_norm(delta.detach().float(), "l2").flatten() for delta in self.deltas]
        return torch.cat(norms).mean() if norms else torch.zeros(())


def row_norm(tensor: torch.Tensor, norm: str) -> torch.Tensor:
    """Per row (first axis) L2 or L-inf norm, shaped to broadcast against ``tensor``."""
    flat = tensor.flatten(start_dim=1)
    value = flat.norm(dim=1) if norm == "l2" else flat.abs().amax(dim=1)
    return value.view(-1, *([1] * (tensor.dim() - 1)))


def normalised(gradient: torch.Tensor, norm: str, epsilon: float = TINY) -> torch.Tensor:
    """The gradient over its row norm (plus ``epsilon``): the L2 unit direction, or
    (L-inf) g / ||g||_inf as FreeLB takes it."""
    return gradient / (row_norm(gradient, norm) + epsilon)


def projected(delta: torch.Tensor, epsilon: float, norm: str) -> torch.Tensor:
    """``delta`` moved back into the ``epsilon`` ball, row by row."""
    if norm == "linf":
        return delta.clamp(-epsilon, epsilon)
    return delta * (epsilon / (row_norm(delta, "l2") + TINY)).clamp(max=1.0)


def _uniform(generator: torch.Generator, shape: torch.Size, device: torch.device) -> torch.Tensor:
    """U(-1, 1) drawn on the CPU from the step's generator: the same on any device."""
    return (torch.rand(shape, generator=generator) * 2 - 1).to(device)


def _normal(generator: torch.Generator, shape: torch.Size, device: torch.device) -> torch.Tensor:
    return torch.randn(shape, generator=generator).to(device)


# ---------------------------------------------------------------------------
# Divergences between two outputs


def kl(p_logits: list[torch.Tensor], q_logits: list[torch.Tensor]) -> torch.Tensor:
    """Sum over distributions of the mean KL(p || q) per row, in float32."""
    total = torch.zeros((), device=p_logits[0].device)
    for p, q in zip(p_logits, q_logits, strict=True):
        if p.numel() == 0:
            continue
        log_p = F.log_softmax(p.float(), dim=-1)
        log_q = F.log_softmax(q.float(), dim=-1)
        total = total + (log_p.exp() * (log_p - log_q)).sum(dim=-1).mean()
    return total


def symmetric_kl(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    return kl(a, b) + kl(b, a)


def _detached(logits: list[torch.Tensor]) -> list[torch.Tensor]:
    return [x.detach() for x in logits]


# ---------------------------------------------------------------------------
# Objectives


class Objective:
    """Standard training: one forward and one backward pass."""

    trained_term: ClassVar[str] = "loss"
    """The term the step trains on: the loop checks that it is finite."""

    def step(self, micro: MicroBatch) -> Terms:
        loss = micro.loss(micro.forward())
        micro.backward(loss * micro.scale)
        return {"loss": loss.detach()}

    def attach(self, model: nn.Module, total_steps: int) -> None:
        """Called once before training starts, with the (unwrapped) model and the
        phase's number of optimizer updates."""
        return None

    # Objectives with state across steps (SMART's teacher) keep it in checkpoints.
    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        return None

    def after_optimizer_step(self, model: nn.Module, update: int) -> None:
        """Called after each optimizer update; ``update`` counts them from 1 (it comes
        from the loop's step, so a resumed run goes on counting where it stopped)."""
        return None


class Adversarial(Objective):
    """A method's step, run in float32 (``precision: float32``) or under the run's
    autocast (``precision: autocast``)."""

    def __init__(self, precision: str) -> None:
        self.precision = precision

    def step(self, micro: MicroBatch) -> Terms:
        if self.precision != "float32":
            return self._step(micro)
        # Off here for what the step computes itself (losses, divergences), and, through
        # float32_forward, inside the model's forward, where Accelerate turns it on.
        with torch.autocast(micro.seam.device.type, enabled=False), float32_forward():
            return self._step(micro)

    def _step(self, micro: MicroBatch) -> Terms:
        raise NotImplementedError


_DEFAULTS = ADVERSARIAL_OPTIONS


class FGM(Adversarial):
    def __init__(
        self,
        epsilon: float = _DEFAULTS["fgm"]["epsilon"],
        precision: str = _DEFAULTS["fgm"]["precision"],
    ) -> None:
        super().__init__(precision)
        self.epsilon = epsilon

    def _step(self, micro: MicroBatch) -> Terms:
        with micro.seam.active(zeros, track_grad=True) as seam:
            seam.new_pass()
            loss = micro.loss(micro.forward())
            micro.backward(loss * micro.scale)  # the parameters' gradients, and the deltas'
            seam.replace([self.epsilon * normalised(d.grad, "l2") for d in seam.deltas])
            seam.new_pass()
            adversarial = micro.loss(micro.forward())
            micro.backward(adversarial * micro.scale)
            norm = seam.mean_norm()
        return {
            "loss": loss.detach(),
            "adversarial_loss": adversarial.detach(),
            "perturbation_norm": norm,
        }


class PGD(Adversarial):
    """Madry et al.: trained on the loss at the last perturbation only, so its term is
    ``adversarial_loss`` (no clean loss is computed)."""

    trained_term = "adversarial_loss"

    def __init__(
        self,
        epsilon: float = _DEFAULTS["pgd"]["epsilon"],
        step_size: float = _DEFAULTS["pgd"]["step_size"],
        steps: int = _DEFAULTS["pgd"]["steps"],
        norm: str = _DEFAULTS["pgd"]["norm"],
        precision: str = _DEFAULTS["pgd"]["precision"],
    ) -> None:
        super().__init__(precision)
        self.epsilon, self.step_size, self.steps, self.norm = epsilon, step_size, steps, norm

    def direction(self, gradient: torch.Tensor) -> torch.Tensor:
        """The steepest ascent direction of unit norm: sign(g) for L-inf, g / ||g||_2."""
        return gradient.sign() if self.norm == "linf" else normalised(gradient, "l2")

    def _step(self, micro: MicroBatch) -> Terms:
        def random_start(mask: torch.Tensor, shape: torch.Size) -> torch.Tensor:
            noise = _uniform(micro.generator, shape, mask.device) * mask
            if self.norm == "linf":
                return noise * self.epsilon
            radius = _uniform(micro.generator, torch.Size([shape[0], 1, 1]), mask.device).abs()
            return normalised(noise, "l2") * self.epsilon * radius

        with micro.seam.active(random_start, track_grad=True) as seam:
            for _ in range(self.steps):
                seam.new_pass()
                loss = micro.loss(micro.forward())
                gradients = torch.autograd.grad(loss, seam.deltas)
                seam.replace(
                    [
                        projected(
                            d.detach() + self.step_size * self.direction(g),
                            self.epsilon,
                            self.norm,
                        )
                        for d, g in zip(seam.deltas, gradients, strict=True)
                    ]
                )
            seam.new_pass()
            adversarial = micro.loss(micro.forward())
            # Madry et al.: the loss at the final perturbation only
            micro.backward(adversarial * micro.scale)
            norm = seam.mean_norm()
        return {"adversarial_loss": adversarial.detach(), "perturbation_norm": norm}


class FreeLB(Adversarial):
    def __init__(
        self,
        steps: int = _DEFAULTS["freelb"]["steps"],
        step_size: float = _DEFAULTS["freelb"]["step_size"],
        init_magnitude: float = _DEFAULTS["freelb"]["init_magnitude"],
        epsilon: float = _DEFAULTS["freelb"]["epsilon"],
        norm: str = _DEFAULTS["freelb"]["norm"],
        dropout: str = _DEFAULTS["freelb"]["dropout"],
        precision: str = _DEFAULTS["freelb"]["precision"],
    ) -> None:
        super().__init__(precision)
        self.steps, self.step_size, self.norm = steps, step_size, norm
        self.init_magnitude, self.epsilon, self.dropout = init_magnitude, epsilon, dropout

    def _step(self, micro: MicroBatch) -> Terms:
        def random_start(mask: torch.Tensor, shape: torch.Size) -> torch.Tensor:
            if self.init_magnitude == 0:
                return zeros(mask, shape)
            noise = _uniform(micro.generator, shape, mask.device) * mask
            if self.norm == "linf":
                return noise * self.init_magnitude
            # Zhu et al.: U(-1, 1) scaled to init_magnitude / sqrt(real tokens x hidden)
            real = (mask.flatten(start_dim=1).sum(dim=1) * shape[-1]).clamp(min=1)
            return noise * (self.init_magnitude / real.sqrt()).view(-1, 1, 1)

        # Zhu et al. keep one dropout mask for the K passes: each pass draws its masks
        # from the same state of the global generators.
        rng = _RngState(micro.seam.device) if self.dropout == "fixed" else None
        total = torch.zeros(())
        with micro.seam.active(random_start, track_grad=True) as seam:
            for step in range(self.steps):
                if rng is not None and step > 0:
                    rng.restore()
                seam.new_pass()
                loss = micro.loss(micro.forward()) / self.steps
                micro.backward(loss * micro.scale)  # parameter gradients accumulate
                total = total + loss.detach()
                if step == self.steps - 1:
                    break
                updated = []
                for delta in seam.deltas:
                    moved = delta.detach() + self.step_size * normalised(delta.grad, self.norm)
                    if self.epsilon > 0:
                        moved = projected(moved, self.epsilon, self.norm)
                    updated.append(moved)
                seam.replace(updated)
            norm = seam.mean_norm()
        return {"loss": total, "perturbation_norm": norm}


class _RngState:
    """The global generators' state (CPU, and the accelerator's), to draw the same
    random numbers (dropout masks) again."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cpu = torch.get_rng_state()
        self.accelerator = None
        if device.type != "cpu":
            module = torch.get_device_module(device.type)
            per_device = device.type in ("cuda", "xpu")
            state = module.get_rng_state(device) if per_device else module.get_rng_state()
            self.accelerator = state

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.accelerator is not None:
            module = torch.get_device_module(self.device.type)
            if self.device.type in ("cuda", "xpu"):
                module.set_rng_state(self.accelerator, self.device)
            else:
                module.set_rng_state(self.accelerator)


class SMART(Adversarial):
    def __init__(
        self,
        weight: float = _DEFAULTS["smart"]["lambda"],
        sigma: float = _DEFAULTS["smart"]["sigma"],
        epsilon: float = _DEFAULTS["smart"]["epsilon"],
        step_size: float = _DEFAULTS["smart"]["step_size"],
        steps: int = _DEFAULTS["smart"]["steps"],
        normalise: str = _DEFAULTS["smart"]["normalise"],
        mu: float = _DEFAULTS["smart"]["mu"],
        beta: float = _DEFAULTS["smart"]["beta"],
        beta_early: float = _DEFAULTS["smart"]["beta_early"],
        beta_early_fraction: float = _DEFAULTS["smart"]["beta_early_fraction"],
        precision: str = _DEFAULTS["smart"]["precision"],
    ) -> None:
        super().__init__(precision)
        self.weight, self.sigma, self.epsilon = weight, sigma, epsilon
        self.step_size, self.steps, self.normalise = step_size, steps, normalise
        self.mu, self.beta, self.beta_early = mu, beta, beta_early
        self.beta_early_fraction = beta_early_fraction
        self.total_steps: int | None = None
        self.teacher: nn.Module | None = None

    def direction(self, gradient: torch.Tensor) -> torch.Tensor:
        """g over its L-inf norm, per token (reference code) or per example (plus the
        reference code's small constant)."""
        if self.normalise == "token":
            scale = gradient.abs().amax(dim=-1, keepdim=True)
        else:
            scale = row_norm(gradient, "linf")
        return gradient / (scale + SMART_EPSILON)

    def ascend(self, delta: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        """One ascent step, projected onto the L-inf ball of radius epsilon (0: none)."""
        moved = delta + self.step_size * self.direction(gradient)
        return moved.clamp(-self.epsilon, self.epsilon) if self.epsilon > 0 else moved

    def _step(self, micro: MicroBatch) -> Terms:
        clean = micro.forward()
        loss = micro.loss(clean)
        clean_dist = micro.distributions(clean)

        def noise(mask: torch.Tensor, shape: torch.Size) -> torch.Tensor:
            return _normal(micro.generator, shape, mask.device) * self.sigma

        with micro.seam.active(noise, track_grad=True) as seam:
            for _ in range(self.steps):
                seam.new_pass()
                perturbed = micro.distributions(micro.forward())
                gap = kl(perturbed, _detached(clean_dist))
                gradients = torch.autograd.grad(gap, seam.deltas)
                seam.replace(
                    [
                        self.ascend(d.detach(), g)
                        for d, g in zip(seam.deltas, gradients, strict=True)
                    ]
                )
            seam.new_pass()
            perturbed = micro.distributions(micro.forward())
            norm = seam.mean_norm()
        # Each direction's KL trains only its first argument, as in the reference code.
        regulariser = kl(perturbed, _detached(clean_dist)) + kl(clean_dist, _detached(perturbed))
        total = loss + self.weight * regulariser
        terms = {"regulariser": regulariser.detach(), "perturbation_norm": norm}
        if self.mu > 0:
            proximal = self._proximal(micro, clean_dist)
            total = total + self.mu * proximal
            terms["proximal"] = proximal.detach()
        micro.backward(total * micro.scale)
        return {"loss": loss.detach(), **terms}

    def _proximal(self, micro: MicroBatch, clean_dist: list[torch.Tensor]) -> torch.Tensor:
        """Bregman proximal point term: symmetric KL to the momentum teacher's outputs."""
        assert self.teacher is not None, "attach sets up the teacher"
        with torch.no_grad():
            teacher_dist = micro.distributions(micro.forward_with(self.teacher))
        return symmetric_kl(clean_dist, teacher_dist)

    def attach(self, model: nn.Module, total_steps: int) -> None:
        """The teacher starts as a copy of the model (theta tilde_0 = theta_0)."""
        self.total_steps = total_steps
        if self.mu > 0 and self.teacher is None:
            self.teacher = copy.deepcopy(model).eval().requires_grad_(False)

    def beta_at(self, update: int) -> float:
        """The teacher's momentum at the ``update``-th update (from 1): Jiang et al.
        (after Tarvainen and Valpola 2017) use 0.99 while t <= 0.1 T, then 0.999."""
        assert self.total_steps is not None, "attach sets the number of updates"
        early = update <= self.beta_early_fraction * self.total_steps
        return self.beta_early if early else self.beta

    def after_optimizer_step(self, model: nn.Module, update: int) -> None:
        if self.teacher is None:
            return
        beta = self.beta_at(update)
        with torch.no_grad():  # theta tilde <- (1 - beta) theta + beta theta tilde
            for mine, theirs in zip(self.teacher.parameters(), model.parameters(), strict=True):
                mine.mul_(beta).add_(theirs.detach(), alpha=1 - beta)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.teacher is None:
            return {}
        return {f"teacher/{k}": v.detach().clone() for k, v in self.teacher.state_dict().items()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if self.teacher is not None and tensors:
            prefix = "teacher/"
            state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            self.teacher.load_state_dict(state, strict=False)


class R3F(Adversarial):
    def __init__(
        self,
        weight: float = _DEFAULTS["r3f"]["lambda"],
        sigma: float = _DEFAULTS["r3f"]["sigma"],
        noise: str = _DEFAULTS["r3f"]["noise"],
        precision: str = _DEFAULTS["r3f"]["precision"],
    ) -> None:
        super().__init__(precision)
        self.weight, self.sigma, self.noise = weight, sigma, noise

    def _step(self, micro: MicroBatch) -> Terms:
        clean = micro.forward()
        loss = micro.loss(clean)

        def noise(mask: torch.Tensor, shape: torch.Size) -> torch.Tensor:
            draw = _normal if self.noise == "normal" else _uniform
            return draw(micro.generator, shape, mask.device) * self.sigma

        with micro.seam.active(noise) as seam:
            seam.new_pass()
            noisy = micro.forward()
            norm = seam.mean_norm()
        regulariser = symmetric_kl(micro.distributions(clean), micro.distributions(noisy))
        micro.backward((loss + self.weight * regulariser) * micro.scale)
        terms = {"regulariser": regulariser.detach(), "perturbation_norm": norm}
        return {"loss": loss.detach(), **terms}


_METHODS: dict[str, type[Adversarial]] = {
    "fgm": FGM,
    "pgd": PGD,
    "freelb": FreeLB,
    "smart": SMART,
    "r3f": R3F,
}


def make_objective(config: AdversarialConfig | None) -> Objective:
    """The objective of a task's training, from its resolved adversarial settings."""
    if config is None or config.method == "none":
        return Objective()
    options: dict[str, Any] = {
        ("weight" if name == "lambda" else name): value for name, value in config.options().items()
    }
    return _METHODS[config.method](**options)


def step_generator(seed: int, step: int, micro: int) -> torch.Generator:
    """A generator for one micro-batch's random perturbations, fixed by (seed, step,
    micro-batch): a resumed run draws what the uninterrupted one drew."""
    mixed = (seed * 1_000_003 + step) * 1_009 + micro
    return torch.Generator().manual_seed(mixed % (2**63))

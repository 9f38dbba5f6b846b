"""AdvantageNAS's toy teacher-student regression task (Sato et al. 2021, §5.1).

Teacher and student share a DAG: one input node, |I| = 10 intermediate nodes with an edge from the
input to each, |J| = 10 candidate convolutions per edge (7x7, stride 2, one output channel), then
tanh at each intermediate node; from each intermediate node a 4x4 stride-1 convolution (one output
channel) to the output node, whose value is the average. Inputs are uniform on [-1, 1]^(13x13x1),
a fresh batch of 100 every step. The shared weights w* and the teacher's architecture a* are random
and fixed (weights are never trained); the loss is the squared error to the teacher's output, zero
if and only if the student's architecture is a*.

As in the official code, edge i's candidates are the output channels of one 7x7 convolution with
10 output channels, the mixture is taken before the tanh, and weights are LeCun-normal with zero
biases.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.arch import Candidate, ChoiceGroup, Mix
from ..engine.task import Task
from ..errors import ArchgradError, GenotypeError
from .base import Genotype, SearchSpace, Supernet

LABEL = "edges"


class ToyGenotype(Genotype):
    """The candidate chosen on each edge; canonical string ``3,7,0,...``."""

    __slots__ = ("choices",)

    def __init__(self, choices, candidates: int | None = None):
        choices = tuple(int(c) for c in choices)
        if candidates is not None and any(not 0 <= c < candidates for c in choices):
            raise GenotypeError(f"toy genotype entries must be in 0..{candidates - 1}, "
                                f"got {list(choices)}")
        object.__setattr__(self, "choices", choices)

    def __setattr__(self, *_):
        raise AttributeError("genotypes are immutable")

    def __str__(self) -> str:
        return ",".join(map(str, self.choices))


class ToySupernet(Supernet):
    def __init__(self, edges: int, candidates: int, kernel: int, stride: int, head_kernel: int,
                 group: ChoiceGroup):
        super().__init__()
        self.group, self.stride = group, stride
        E, K = edges, candidates
        # LeCun normal: std = 1/sqrt(fan_in); zero biases (Chainer's defaults in the official code)
        self.conv_weight = nn.Parameter(torch.randn(E, K, 1, kernel, kernel) / kernel,
                                        requires_grad=False)
        self.conv_bias = nn.Parameter(torch.zeros(E, K), requires_grad=False)
        self.head_weight = nn.Parameter(torch.randn(E, 1, 1, head_kernel, head_kernel)
                                        / head_kernel, requires_grad=False)
        self.register_buffer("teacher", torch.randint(0, K, (E,)))

    def teacher_mix(self, device=None) -> Mix:
        return Mix.onehot({LABEL: self.teacher.tolist()}, {LABEL: self.group},
                          device=device or self.teacher.device)

    def forward(self, x: Tensor, mix: Mix) -> Tensor:
        E, K = self.conv_weight.shape[:2]
        w = mix.weights[LABEL]
        pairs = [(e, k) for e in range(E)
                 for k in mix.edge_active(LABEL, e, self.group.skip_mask)]
        h = x.new_zeros(x.shape[0], E, 1, 1)
        if pairs:
            e_idx = torch.tensor([p[0] for p in pairs], device=x.device)
            k_idx = torch.tensor([p[1] for p in pairs], device=x.device)
            # only the active candidates are convolved, all in one call
            y = F.conv2d(x, self.conv_weight[e_idx, k_idx], self.conv_bias[e_idx, k_idx],
                         stride=self.stride)
            y = y * w[e_idx, k_idx].view(1, -1, 1, 1)
            h = torch.zeros(x.shape[0], E, *y.shape[-2:], device=x.device, dtype=y.dtype)
            h = h.index_add(1, e_idx, y)
        if mix.inactive_as_constant:
            mask = torch.ones(E, K, dtype=torch.bool, device=x.device)
            if pairs:
                mask[e_idx, k_idx] = False
            h = h + (w * mask).sum(-1).view(1, E, 1, 1)
        h = torch.tanh(h)
        out = F.conv2d(h, self.head_weight.flatten(0, 1), groups=E)
        return out.mean(dim=(1, 2, 3))


class ToyNetwork(nn.Module):
    """The stand-alone student of one architecture, with its own (fresh) weights."""

    def __init__(self, genotype: ToyGenotype, kernel=7, stride=2, head_kernel=4):
        super().__init__()
        self.genotype = genotype
        E = len(genotype.choices)
        self.convs = nn.Conv2d(1, E, kernel, stride=stride)
        self.heads = nn.Conv2d(E, E, head_kernel, groups=E, bias=False)

    def forward(self, x):
        return self.heads(torch.tanh(self.convs(x))).mean(dim=(1, 2, 3))


class ToyTask(Task):
    """Fresh uniform inputs every step; targets from the teacher; a fixed test batch."""

    record_derived = True

    def __init__(self, model: ToySupernet, batch_size: int, seed: int, device, steps: int,
                 image_size: int, test_size: int):
        self.model, self.batch_size, self.seed = model, batch_size, seed
        self.device, self.steps_per_epoch, self.size = torch.device(device), steps, image_size
        self.loss_fn = F.mse_loss
        g = torch.Generator().manual_seed(seed * 1_000_003 + 999_983)
        self.test = self._batch(test_size, g)

    @torch.no_grad()
    def _batch(self, n, g):
        x = (torch.rand(n, 1, self.size, self.size, generator=g) * 2 - 1).to(self.device)
        return x, self.model(x, self.model.teacher_mix(self.device))

    def _stream(self, epoch, salt):
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 2 + salt)
        for _ in range(self.steps_per_epoch):
            yield self._batch(self.batch_size, g)

    def weight_batches(self, epoch):
        return self._stream(epoch, 0)

    def arch_batches(self, epoch):
        return self._stream(epoch, 1)

    @torch.no_grad()
    def evaluate(self, model, mix, limit=None, bn="running"):
        x, y = self.test
        return {"loss": float(F.mse_loss(model(x, mix() if callable(mix) else mix), y))}

    def describe(self):
        return (f"teacher-student: fresh U[-1,1]^{self.size}x{self.size} batches of "
                f"{self.batch_size}, {self.steps_per_epoch} steps per epoch")


class ToySpace(SearchSpace):
    """AdvantageNAS's toy teacher-student regression: 10 edges x 10 candidate 7x7 convolutions,
    fixed random weights, a random teacher architecture to recover."""

    name = "toy"
    own_data = "teacher-student"
    #: AdvantageNAS §5.1: theta by Adam, lr 0.001, betas (0.9, 0.999) (no weight decay), for
    #: every strategy that steps its architecture with Adam
    arch_defaults = {"arch_lr": 1e-3, "arch_betas": (0.9, 0.999), "arch_weight_decay": 0.0}
    #: every iteration is an architecture iteration (the weights are fixed), for every strategy
    strategy_defaults = {"arch_every": 1, "warmup_epochs": 0}
    defaults_sources = {"arch": "AdvantageNAS §5.1 (Adam, lr 0.001, betas (0.9, 0.999))",
                        "arch_every": "AdvantageNAS §5.1 / toy/toy.py (fixed weights: every "
                                      "iteration updates theta)",
                        "warmup_epochs": "toy/toy.py (fixed weights: no warm-up; theta steps "
                                         "from the first iteration)"}
    own_data_epochs = 20  # x 100 steps = the paper's 2000 iterations
    default_batch_size = 100
    tiny = {"edges": 3, "candidates": 4}
    search_flags = build_flags = {"cells": "edges"}
    options = {
        "edges": (10, "edges |I| (intermediate nodes)"),
        "candidates": (10, "candidate convolutions |J| per edge"),
        "kernel": (7, "candidate filter size"),
        "stride": (2, "candidate stride"),
        "image_size": (13, "input size (13x13x1)"),
        "head_kernel": (None, "output convolution size (default: the candidates' output size)"),
        "steps_per_epoch": (100, "iterations per epoch"),
        "test_size": (1000, "inputs in the fixed test batch"),
    }

    def __init__(self, **options):
        super().__init__(**options)
        c = self.config
        out = (c["image_size"] - c["kernel"]) // c["stride"] + 1
        if out < 1:
            raise GenotypeError("toy: kernel larger than the input")
        if c["head_kernel"] is None:
            c["head_kernel"] = out
        self._group = ChoiceGroup(
            LABEL, tuple(Candidate(f"conv{c['kernel']}x{c['kernel']}_{j}")
                         for j in range(c["candidates"])),
            tuple((0, i + 1) for i in range(c["edges"])))

    def choices(self):
        return [self._group]

    def supernet(self) -> ToySupernet:
        c = self.config
        return ToySupernet(c["edges"], c["candidates"], c["kernel"], c["stride"],
                           c["head_kernel"], self._group)

    def task(self, model, batch_size, seed, device) -> ToyTask:
        c = self.config
        return ToyTask(model, batch_size, seed, device, c["steps_per_epoch"], c["image_size"],
                       c["test_size"])

    def build(self, genotype) -> ToyNetwork:
        c = self.config
        return ToyNetwork(self.genotype(genotype), c["kernel"], c["stride"], c["head_kernel"])

    def parse(self, text: str) -> ToyGenotype:
        parts = text.strip().split(",")
        try:
            choices = [int(p) for p in parts]
        except ValueError:
            raise GenotypeError(f"malformed toy genotype {text!r}: expected "
                                f"{self.config['edges']} comma-separated candidate indices "
                                f"like 3,7,0,...") from None
        if len(choices) != self.config["edges"]:
            raise GenotypeError(f"malformed toy genotype {text!r}: expected "
                                f"{self.config['edges']} entries, got {len(choices)}")
        return ToyGenotype(choices, self.config["candidates"])

    def genotype(self, value) -> ToyGenotype:
        if isinstance(value, ToyGenotype):
            return value
        if isinstance(value, str):
            return self.parse(value)
        raise GenotypeError(f"expected a toy genotype or its string, got {value!r}")

    def derive(self, probs: Mapping[str, Tensor], *, exclude_none: bool = False,
               edge_weights=None, max_skip=None) -> ToyGenotype:
        return ToyGenotype(probs[LABEL].argmax(-1).tolist(), self.config["candidates"])

    def genotype_from_indices(self, indices) -> ToyGenotype:
        return ToyGenotype(indices[LABEL], self.config["candidates"])

    def indices(self, genotype) -> dict[str, list[int]]:
        return {LABEL: list(self.genotype(genotype).choices)}

    def loss(self, output, target):
        return F.mse_loss(output, target)

    def report(self, model, genotype):
        """The teacher's architecture a*, and whether the derived genotype is it."""
        teacher = teacher_genotype(model)
        return {"teacher": str(teacher), "found_teacher": str(teacher) == str(genotype),
                "edges_right": sum(int(a == b) for a, b in zip(teacher.choices,
                                                               self.genotype(genotype).choices))}

    def input_shape(self, image_size=None):
        s = self.config["image_size"]
        if image_size is not None and image_size != s:
            raise ArchgradError(f"the toy network's input is {s}x{s}, fixed by the space's option "
                                f"image_size: --set image_size={image_size}, not --image-size")
        return (1, s, s)

    def example_batch(self, batch_size=4, generator=None, size=None):
        g = generator or torch.Generator().manual_seed(0)
        s = self.config["image_size"]
        return (torch.rand(batch_size, 1, s, s, generator=g) * 2 - 1,
                torch.randn(batch_size, generator=g) * 0.1)

    def train_recipe(self):
        return {"epochs": 20, "batch_size": 100, "lr": 0.01, "lr_min": 0.0, "momentum": 0.9,
                "weight_decay": 0.0, "nesterov": False, "grad_clip": None}


def teacher_genotype(model: ToySupernet) -> ToyGenotype:
    return ToyGenotype(model.teacher.tolist())


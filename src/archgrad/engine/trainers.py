"""What one epoch of training does, per kind of network: ``ImageTrainer`` (the space's recipe:
SGD, cosine schedule, auxiliary head, drop-path, cutout; test accuracy) and, for language
models, archgrad.engine.lmtrain's trainer; ``make_trainer`` picks one."""
from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..data import BatchLoader

if TYPE_CHECKING:
    from .train import TrainConfig

#: mixed-precision recipes: the autocast dtype of each
AMP = {"bf16": torch.bfloat16, "fp16": torch.float16}


@torch.no_grad()
def evaluate_plain(model: nn.Module, loader: BatchLoader, loss_fn) -> dict[str, float]:
    was = model.training
    model.eval()
    n, loss_sum, correct = 0, 0.0, 0.0
    for x, y in loader.epoch(0):
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out
        loss_sum += float(loss_fn(out, y)) * len(y)
        correct += float((out.argmax(-1) == y).sum())
        n += len(y)
    model.train(was)
    return {"loss": loss_sum / max(n, 1), "acc": 100.0 * correct / max(n, 1)}


class ImageTrainer:
    """Epochs of minibatch SGD on an image dataset (cosine schedule, auxiliary head, drop
    path, cutout on CIFAR-style data); test accuracy at the end."""

    def __init__(self, data, recipe: dict, seed: int, device, shard=(0, 1)):
        self.data, self.recipe = data, recipe
        bs = int(recipe["batch_size"])
        kw = dict(mean=data.mean, std=data.std, device=device, pad=getattr(data, "pad", 4))
        self.dist = None
        # cutout belongs to the CIFAR recipe: only on datasets augmented the CIFAR way
        cutout = int(recipe.get("cutout", 0) or 0) if data.augment else 0
        self.train = BatchLoader(data.x_train, data.y_train, bs, shuffle=True,
                                 augment=data.augment, drop_last=len(data.y_train) > bs
                                 or shard[1] > 1, seed=seed, cutout=cutout, shard=shard, **kw)
        self.test = BatchLoader(data.x_test, data.y_test, max(bs, 256), **kw) \
            if len(data.y_test) else None
        self.steps_per_epoch = len(self.train)
        self.loss_fn = None  # set by the caller: the space's loss
        self.eval_every = 0
        self.device = device
        self.scaler = torch.amp.GradScaler(torch.device(device).type) \
            if recipe.get("amp") == "fp16" else None

    def meta_input(self, batch: int):
        d = self.data
        return torch.empty(batch, d.in_channels, d.image_size, d.image_size, device="meta")

    def optimizer(self, model, lr):
        r = self.recipe
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=r["momentum"],
                               weight_decay=r["weight_decay"], nesterov=r["nesterov"])

    def train_epoch(self, model, opt, epoch: int, lr: float, bar=None):
        recipe, dev = self.recipe, self.device
        for g in opt.param_groups:
            g["lr"] = lr
        if hasattr(model, "drop_path_prob"):
            model.drop_path_prob = float(recipe.get("drop_path", 0.0)) * epoch / \
                int(recipe["epochs"])
        aux_w = float(recipe.get("aux_weight", 0.0) or 0.0)
        smooth = float(recipe.get("label_smoothing", 0.0) or 0.0)
        # DARTS's ImageNet training loss (CrossEntropyLabelSmooth), main and auxiliary heads;
        # evaluation keeps the plain loss
        loss_fn = self.loss_fn if not smooth else \
            (lambda o, t: nn.functional.cross_entropy(o, t, label_smoothing=smooth))
        model.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
        correct = torch.zeros((), dtype=torch.float64, device=dev)
        first_bad = torch.full((), -1, dtype=torch.long, device=dev)
        n = 0
        amp = AMP.get(recipe.get("amp"))
        scaler = self.scaler
        sync = self.dist.synchronised_batch_norm(bool(recipe.get("sync_bn"))) \
            if self.dist is not None else nullcontext()
        for step, (x, y) in enumerate(self.train.epoch(epoch)):
            with sync, torch.autocast(x.device.type, dtype=amp, enabled=amp is not None):
                out = model(x)
                aux = None
                if isinstance(out, tuple):
                    out, aux = out
                loss = loss_fn(out, y).float()
                total = loss + aux_w * loss_fn(aux, y).float() if aux is not None \
                    and aux_w else loss
            opt.zero_grad(set_to_none=True)
            (scaler.scale(total) if scaler is not None else total).backward()
            if scaler is not None:
                scaler.unscale_(opt)
            if self.dist is not None:  # data parallel: the gradient of the whole batch
                self.dist.average_([p.grad for p in model.parameters() if p.grad is not None])
            norm = nn.utils.clip_grad_norm_(model.parameters(),
                                            recipe.get("grad_clip") or float("inf"))
            if scaler is not None:  # an overflow skips the step and lowers the scale
                norm = torch.where(torch.isfinite(norm), norm, torch.zeros_like(norm))
            bad = ~(torch.isfinite(loss.detach()) & torch.isfinite(norm))
            first_bad = torch.where(bad & (first_bad < 0), torch.full_like(first_bad, step),
                                    first_bad)
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            loss_sum += loss.detach() * len(y)
            correct += (out.argmax(-1) == y).sum()
            n += len(y)
            if bar is not None:
                bar.update(1)
        return {"train_loss": float(loss_sum) / n, "train_acc": 100.0 * float(correct) / n}, \
            int(first_bad)

    def end_epoch(self, model, opt, epoch: int, lr: float, rec: dict):
        epochs = int(self.recipe["epochs"])
        if self.test is not None and self.eval_every and \
                ((epoch + 1) % self.eval_every == 0) and epoch + 1 < epochs:
            ev = evaluate_plain(model, self.test, self.loss_fn)
            rec.update(test_loss=ev["loss"], test_acc=ev["acc"])
        return opt

    def final(self, model) -> dict:
        if self.test is None:
            return {}
        ev = evaluate_plain(model, self.test, self.loss_fn)
        return {"test_loss": ev["loss"], "test_acc": ev["acc"]}

    def example(self, model):
        return self.data.x_train[:2].float().to(self.device)

    def state_dict(self) -> dict:
        return {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


def make_trainer(space, data, recipe: dict, cfg: TrainConfig, dev):
    """The training loop's data side: language modelling for recurrent spaces, else images;
    under torchrun, this rank's shard of every batch and gradients averaged over the ranks."""
    from . import dist
    ctx = dist.context()
    dist.check_batch(int(recipe["batch_size"]), "the training batch size")
    if space.modality == "sequence":
        from .lmtrain import LMTrainer
        tr = LMTrainer(data, recipe, cfg.seed, dev, shard=ctx.shard())
    else:
        tr = ImageTrainer(data, recipe, cfg.seed, dev, shard=ctx.shard())
        tr.loss_fn, tr.eval_every = space.loss, cfg.eval_every
    tr.dist = ctx if ctx.active else None
    return tr

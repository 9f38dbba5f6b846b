"""What a search would build and whether it fits: the task, the stages' spaces, the memory
estimate (on PyTorch's meta device) and ``plan_search``."""
from __future__ import annotations

import torch

from ..core.arch import Mix
from ..core.strategy import Strategy
from ..data import load_dataset
from ..engine.task import ImageTask
from ..methods import make_strategy
from ..spaces import SPACES, get_space
from .config import SearchConfig, check_search_kwargs, resolve_device


def build_task(space, model, data, cfg: SearchConfig, dev, strategy: Strategy):
    """The task the search loop drives: the space's own (the toy task), language modelling on
    a text corpus, or image classification; under torchrun, this rank's shard of the batches
    (the toy task's batches are generated whole on every rank)."""
    from ..engine import dist
    if space.own_data:
        return space.task(model, cfg.batch_size, cfg.seed, dev)
    if space.modality == "sequence":
        from ..engine.lmtask import LMTask
        return LMTask(data, cfg.batch_size, cfg.seed, dev, shard=dist.context().shard(),
                      **space.lm_settings())
    return ImageTask(data, cfg.batch_size, cfg.seed, dev, space.loss, strategy.data_split,
                     shard=dist.context().shard())


def _stage_space(cfg: SearchConfig, stage, data):
    """The space of one stage of the search (a progressive strategy's stages change options),
    with the options the dataset sets (classes, input channels, vocabulary)."""
    space_cls = SPACES.get(cfg.space)
    opts = dict(cfg.space_options)
    opts.update(stage.space)
    if data is not None:
        for k, v in data.space_options().items():
            if k in space_cls.options:
                opts.setdefault(k, v)
    return get_space(cfg.space, **opts)


def _planned_stages(cfg: SearchConfig) -> tuple[Strategy, list]:
    """The strategy of ``cfg`` and the stages its search runs (one unless progressive)."""
    strategy = make_strategy(cfg.strategy, **cfg.strategy_options)
    strategy.bind_space(SPACES.get(cfg.space), cfg.space_options)
    return strategy, strategy.stages_for(cfg.epochs)


def memory_need(cfg: SearchConfig, data, device) -> int:
    """Bytes the search of ``cfg`` needs on ``device`` at its largest stage (estimated on the
    meta device); a search that cannot fit there alone is refused in one line."""
    return max(_check_memory(_stage_space(cfg, st, data), data, cfg, torch.device(device))
               for st in _planned_stages(cfg)[1])


def plan_search(**kwargs) -> dict:
    """What ``search(**kwargs)`` would run, checked as the search checks it (names, options,
    data, memory) with nothing run or written: the resolved settings, steps per epoch, weight
    and architecture steps, and the memory estimate."""
    from ..engine.memory import GB, available_bytes
    cfg = check_search_kwargs(**kwargs)
    dev = resolve_device(cfg.device)
    space_cls = SPACES.get(cfg.space)
    data = None if space_cls.own_data else load_dataset(cfg.dataset, cfg.data_dir, cfg.subset)
    need = memory_need(cfg, data, dev)
    strategy, stages = _planned_stages(cfg)
    space = _stage_space(cfg, stages[0], data)
    model = space.supernet() if space_cls.own_data else None  # the toy task draws from it
    steps = build_task(space, model, data, cfg, torch.device("cpu"), strategy).steps_per_epoch
    arch_epochs = [e for st in stages for e in range(st.start + st.warmup, st.end)]
    have = available_bytes(dev)
    settings = {k: v for k, v in strategy.settings().items()
                if k not in ("batch_size", "epochs")}
    return {"space": cfg.space, "strategy": cfg.strategy, "dataset": cfg.dataset,
            "device": str(dev), "epochs": cfg.epochs, "batch_size": cfg.batch_size,
            "steps_per_epoch": steps, "weight_steps": steps * cfg.epochs,
            "arch_steps": len(arch_epochs) * (steps // strategy.arch_every),
            "first_arch_epoch": arch_epochs[0] + 1 if arch_epochs else None,
            "stages": len(stages), "stage_plan": [
                {"epochs": [st.start + 1, st.end], "warmup_epochs": st.warmup,
                 "space": dict(st.space)} for st in stages],
            "memory_gb": need / GB,
            "available_gb": have / GB if have is not None else None,
            "space_options": dict(space.config), "strategy_options": settings}


def _check_memory(space, data, cfg: SearchConfig, dev) -> int:
    """Refuse a search network that cannot fit (estimated on the meta device); the bytes it
    needs."""
    from ..engine.memory import guarded
    groups = space.choices()

    def run(model):
        mix = Mix({g.label: torch.full(g.shape, 1.0 / g.shape[1], device="meta")
                   for g in groups},
                  {g.label: [tuple(k for k, c in enumerate(g.candidates) if not c.skipped)]
                   * g.shape[0] for g in groups})
        return model(space.meta_input(cfg.batch_size, data), mix)

    return guarded(space.supernet, run, dev, f"the {cfg.space} search network at batch "
                   f"{cfg.batch_size}", "use fewer channels or cells (--channels, --cells) or "
                   "a smaller --batch-size").training_bytes()

"""The one place that decides device, precision, compilation and process layout; the rest of
ftool asks the Accelerator and never torch.cuda or torch.distributed directly."""

from __future__ import annotations

import atexit
import contextlib
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from ftool.config import TrainerConfig
from ftool.engine.checkpoint import unwrap
from ftool.engine.allocator import tune_malloc
from ftool.errors import FtoolError

_DTYPES = {"bf16-mixed": torch.bfloat16, "fp16-mixed": torch.float16}


def cpu_has_bf16() -> bool:
    """Native bfloat16 arithmetic on this CPU (AVX512-BF16 or AMX); without it bf16 is emulated."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def auto_precision(kind: str) -> tuple[str, str]:
    """(precision=auto's choice on this device, why). On a CPU, bf16 only with AMX's matrix units: with
    AVX512-BF16 alone, bf16 autocast trained MiniLM at 0.6x and SimpleCNN at 0.78x of fp32 (its casts
    cost more than its arithmetic saves); emulated, many times slower."""
    if kind == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16-mixed", "the GPU computes in bf16"
        return "fp16-mixed", "the GPU has no bf16"
    if kind == "cpu" and torch.cpu._is_amx_tile_supported():
        return "bf16-mixed", "the CPU has AMX"
    return "32", "no AMX on this CPU: bf16 would be slower" if kind == "cpu" else "mixed precision gains little on MPS"


@dataclass
class Accelerator:
    device: torch.device
    precision: str  # "32" | "bf16-mixed" | "fp16-mixed": `auto` is resolved
    compile: bool | str  # False | True | "strict"
    compile_mode: str = "default"
    channels_last: bool = False
    strategy: str = "ddp"
    find_unused_parameters: bool = False
    rank: int = 0
    world_size: int = 1
    precision_reason: str = ""  # precision=auto: " (auto: why)", as the banner says it
    _distributed: nn.Module | None = field(default=None, init=False, repr=False)  # DDP wrapper / FSDP root from `prepare`

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        """FSDP: each process holds a shard of the parameters and optimizer state."""
        return self.strategy == "fsdp" and self.world_size > 1

    def autocast(self):
        if self.precision == "32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_DTYPES[self.precision])

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling for fp16 (a no-op object otherwise): fp16 gradients underflow without it."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16-mixed")

    def prepare(self, model: nn.Module) -> tuple[nn.Module, nn.Module]:
        """(the model, on the device; the callable that runs steps: wrapped for DDP/FSDP, compiled)."""
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        step_model = model
        if self.sharded:
            _fully_shard(model, self.device, self.world_size)  # in place: `model` is the sharded module
            self._distributed = model
        elif self.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            step_model = self._distributed = nn.parallel.DistributedDataParallel(
                model, device_ids=ids, find_unused_parameters=self.find_unused_parameters)
        if self.compile:
            import torch._dynamo.config as dynamo_config  # binds only dynamo_config: `torch` stays the module's

            dynamo_config.suppress_errors = self.compile != "strict"  # else a graph that cannot compile runs eagerly
            step_model = torch.compile(step_model, mode=None if self.compile_mode == "default" else self.compile_mode)
        return model, step_model

    @contextlib.contextmanager
    def gradient_sync(self, enabled: bool):
        """Backward passes inside sync gradients across processes only when `enabled`: while
        accumulating, only a group's last batch needs the (expensive) all-reduce."""
        if self._distributed is None or enabled:
            yield
        elif self.sharded:
            self._distributed.set_requires_gradient_sync(False)
            try:
                yield
            finally:
                self._distributed.set_requires_gradient_sync(True)
        else:
            with self._distributed.no_sync():
                yield

    # Checkpoint contents: whole (unsharded) tensors, whatever the strategy. Under FSDP these
    # gather across processes, so every process calls them; only the main one writes the result.
    def model_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        if self.sharded:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return unwrap(model).state_dict()

    def load_model_state(self, model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
        if self.sharded:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

            set_model_state_dict(model, tensors if self.is_main else {},
                                 options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
        else:
            unwrap(model).load_state_dict(tensors)

    def optimizer_state(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
        if self.sharded:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

            return get_optimizer_state_dict(model, optimizer,
                                            options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return optimizer.state_dict()

    def load_optimizer_state(self, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
        if self.sharded:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            set_optimizer_state_dict(model, optimizer, _keyed_by_name(state, model, optimizer) if self.is_main else {},
                                     options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
        else:
            optimizer.load_state_dict(state)  # (by position: an FSDP run's state, keyed by name, loads too)

    def to_device(self, batch):
        """(inputs, targets) on the device; inputs are a tensor or, for text, a dict of tensors."""
        if self.device.type == "cpu" and not self.channels_last:  # (the tensor loader's batches are there)
            return batch
        non_blocking = self.device.type == "cuda"

        def move(t):
            if isinstance(t, dict):
                return {k: v.to(self.device, non_blocking=non_blocking) for k, v in t.items()}
            return t.to(self.device, non_blocking=non_blocking)

        moved = [move(t) for t in batch]
        if self.channels_last and isinstance(moved[0], torch.Tensor) and moved[0].ndim == 4:
            moved[0] = moved[0].contiguous(memory_format=torch.channels_last)
        return moved

    def any(self, flag: bool) -> bool:
        """True on every process when it is True on any (so all stop at the same step)."""
        return bool(self.max(int(flag)))

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        if self.world_size > 1:
            value = value.clone()
            dist.all_reduce(value)
        return value

    def gather(self, value: torch.Tensor) -> torch.Tensor:
        """Every process's `value` (of any length), concatenated along the first dimension in rank order."""
        if self.world_size == 1:
            return value
        parts = [None] * self.world_size
        dist.all_gather_object(parts, value.cpu())
        return torch.cat(parts).to(value.device)

    def broadcast(self, obj):
        """Rank 0's value of `obj` on every process."""
        if self.world_size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def max(self, value: int) -> int:
        """The largest `value` over the processes."""
        if self.world_size == 1:
            return value
        t = torch.tensor(value, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def environment(self) -> dict:
        return {"accelerator": self.device.type, "precision": self.precision, "compile": self.compile,
                "world_size": self.world_size, "strategy": self.strategy if self.world_size > 1 else None,
                "torch": torch.__version__, "threads": torch.get_num_threads(), "malloc": tune_malloc()}


def select(cfg: TrainerConfig) -> Accelerator:
    """The device, precision and processes for a run: `auto` is CUDA, else MPS, else the CPU; precision
    `auto` as auto_precision chooses."""
    tune_malloc()  # before the data and the model allocate
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    kind = cfg.accelerator if cfg.accelerator != "auto" else "cuda" if cuda else "mps" if mps else "cpu"
    if (kind == "cuda" and not cuda) or (kind == "mps" and not mps):
        raise FtoolError(f"trainer.accelerator: {kind} is not available on this machine; use auto or cpu")
    precision, why = auto_precision(kind) if cfg.precision == "auto" else (cfg.precision, "")
    rank, world_size = _init_processes(kind)
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if kind == "cuda" else kind)
    if kind == "cuda":
        torch.cuda.set_device(device)
    return Accelerator(device, precision, cfg.compile, cfg.compile_mode, cfg.channels_last, cfg.strategy,
                       cfg.find_unused_parameters, rank, world_size, f" (auto: {why})" if why else "")


def _keyed_by_name(state: dict, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """An optimizer state saved without FSDP (keyed by each parameter's position) keyed by parameter
    name, as FSDP's loader takes it: a one-process or DDP run resumed with strategy=fsdp."""
    saved = [i for group in state["param_groups"] for i in group["params"]]
    if not all(isinstance(i, int) for i in saved):
        return state  # an FSDP run's own
    names = {p: n for n, p in model.named_parameters()}
    name = dict(zip(saved, (names[p] for group in optimizer.param_groups for p in group["params"])))
    return {"state": {name[i]: s for i, s in state["state"].items()},
            "param_groups": [{**group, "params": [name[i] for i in group["params"]]} for group in state["param_groups"]]}


def _fully_shard(model: nn.Module, device: torch.device, world_size: int) -> None:
    """FSDP2: shard each top-level block that has parameters, then the root (which takes the rest),
    so a forward gathers one block's parameters at a time."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (world_size,))
    for block in model.children():
        if any(p.requires_grad for p in block.parameters()):
            fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)


def _init_processes(kind: str) -> tuple[int, int]:
    """(rank, world size): several processes when started by torchrun (WORLD_SIZE > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if world_size == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if kind == "cuda" else "gloo")
        # One group for the process's lifetime (every job of a sweep uses it), torn down at exit,
        # after a failure as well.
        atexit.register(_shutdown)
    return dist.get_rank(), dist.get_world_size()


def _shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()

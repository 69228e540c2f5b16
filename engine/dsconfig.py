"""The DeepSpeed ZeRO config finetui trains with and exports (one generator for both).

LLaMA-Factory's ``ds_z{stage}[_offload]_config.json`` style: the batch, accumulation,
clipping and precision fields are ``auto`` (the HF Trainer fills them from the job), so the
same file trains here and in LLaMA-Factory.  No heavy imports.
"""

from __future__ import annotations

from typing import Any


def deepspeed_config(stage: int, offload_optimizer: bool = False, offload_params: bool = False) -> dict[str, Any]:
    """A ZeRO config in LLaMA-Factory's style: the batch fields are ``auto`` (filled by the trainer)."""
    zero: dict[str, Any] = {"stage": stage, "overlap_comm": False, "contiguous_gradients": True,
                            "reduce_bucket_size": "auto"}
    if stage >= 2:
        zero.update({"allgather_partitions": True, "allgather_bucket_size": 5e8, "reduce_scatter": True})
    if stage == 3:
        zero.update({"sub_group_size": 1e9, "stage3_prefetch_bucket_size": "auto",
                     "stage3_param_persistence_threshold": "auto", "stage3_max_live_parameters": 1e9,
                     "stage3_max_reuse_distance": 1e9, "stage3_gather_16bit_weights_on_model_save": True})
    if offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if offload_params and stage == 3:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return {
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "zero_allow_untested_optimizer": True,
        "fp16": {"enabled": "auto", "loss_scale": 0, "loss_scale_window": 1000, "initial_scale_power": 16,
                 "hysteresis": 2, "min_loss_scale": 1},
        "bf16": {"enabled": "auto"},
        "zero_optimization": zero,
    }


def for_job(res: dict[str, Any]) -> dict[str, Any]:
    """The config of a resolved job (``trainer.zero_stage`` / ``offload_optimizer`` / ``offload_params``)."""
    return deepspeed_config(int(res["trainer.zero_stage"]), bool(res["trainer.offload_optimizer"]),
                            bool(res["trainer.offload_params"]))

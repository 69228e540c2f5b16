"""Each finetui field's name in the other tools' files, as the importers and exporters use it.

Rendered into ``docs/parameters.md`` ("in other tools"); a test checks every name here
against what the exporters actually write.  Dotted key paths for nested files (Nova).
A note in parentheses says how the value is transformed.
"""

from __future__ import annotations

LF = "LLaMA-Factory"
NOVA = "Nova recipe"
FPT = "FPT AI Studio JSON"
OCI = "OCI JSON"
WX = "watsonx JSON"
TOOLS = (LF, NOVA, FPT, OCI, WX)

_N = "training_config.model"
NAMES: dict[str, dict[str, str]] = {
    "model.name_or_path": {LF: "model_name_or_path", NOVA: "run.model_name_or_path", WX: "base_model.model_id"},
    "model.trust_remote_code": {LF: "trust_remote_code"},
    "model.hidden_dropout": {NOVA: f"{_N}.hidden_dropout"},
    "model.attention_dropout": {NOVA: f"{_N}.attention_dropout"},
    "model.ffn_dropout": {NOVA: f"{_N}.ffn_dropout"},
    "data.train_path": {LF: "dataset (an entry of dataset_info.json)", NOVA: "run.data_s3_path"},
    "data.format": {LF: "dataset_info.json formatting / ranking / columns"},
    "data.validation_path": {LF: "eval_dataset", NOVA: "run.validation_data_s3_path"},
    "data.val_size": {LF: "val_size"},
    "data.allow_percentage_invalid_samples": {NOVA: "training_config.allow_percentage_invalid_samples"},
    "data.max_samples": {LF: "max_samples"},
    "data.packing": {LF: "packing"},
    "data.group_by_length": {LF: "group_by_length"},
    "trainer.stage": {LF: "stage (pt, sft, dpo, kto, rm)"},
    "trainer.training_type": {LF: "finetuning_type (qlora = lora + quantization_bit)",
                              NOVA: f"{_N}.peft.peft_scheme (null = full)",
                              FPT: "training_type (Full, LoRA)", OCI: "trainingConfigType",
                              WX: "peft_parameters.type (none = full) / tuning_type"},
    "trainer.task_type": {WX: "task_id"},
    "trainer.distributed_backend": {LF: "deepspeed (a config file); FSDP: v1 dist_config.name fsdp2, classic: an "
                                        "accelerate config file", FPT: "distributed_backend (DDP, DeepSpeed)"},
    "trainer.fsdp_sharding": {LF: "fsdp_config: fsdp_reshard_after_forward (v1: dist_config.reshard_after_forward)"},
    "trainer.fsdp_cpu_offload": {LF: "fsdp_config: fsdp_offload_params (v1: dist_config.offload_params)"},
    "trainer.fsdp_state_dict": {LF: "fsdp_config: fsdp_state_dict_type"},
    "trainer.zero_stage": {LF: "deepspeed config: zero_optimization.stage", FPT: "zero_stage"},
    "trainer.offload_optimizer": {LF: "deepspeed config: zero_optimization.offload_optimizer"},
    "trainer.offload_params": {LF: "deepspeed config: zero_optimization.offload_param"},
    "general.batch_size": {LF: "per_device_train_batch_size",
                           NOVA: "training_config.micro_batch_size", FPT: "batch_size", OCI: "trainingBatchSize", WX: "batch_size"},
    "general.global_batch_size": {NOVA: "training_config.global_batch_size"},
    "general.epochs": {LF: "num_train_epochs", NOVA: "training_config.trainer.max_epochs", FPT: "epochs",
                       OCI: "totalTrainingEpochs", WX: "num_epochs"},
    "general.max_steps": {LF: "max_steps", NOVA: "training_config.trainer.max_steps"},
    "general.learning_rate": {LF: "learning_rate", NOVA: f"{_N}.optim.lr", FPT: "learning_rate", OCI: "learningRate",
                              WX: "learning_rate"},
    "general.max_sequence_length": {LF: "cutoff_len", NOVA: "training_config.max_length", FPT: "max_sequence_length",
                                    WX: "max_seq_length"},
    "general.resume_from_checkpoint": {LF: "resume_from_checkpoint / overwrite_output_dir (false = last)",
                                       FPT: "resume_from_checkpoint (false = no, true = last)"},
    "runtime.gradient_accumulation_steps": {LF: "gradient_accumulation_steps",
                                            FPT: "gradient_accumulation_steps", WX: "accumulate_steps"},
    "runtime.mixed_precision": {LF: "bf16 / fp16", FPT: "mixed_precision"},
    "runtime.quantization_bit": {LF: "quantization_bit", FPT: "quantization_bit"},
    "runtime.optimizer": {LF: "optim (adamw_torch, sgd)", NOVA: f"{_N}.optim.name (distributed_fused_adam)",
                          FPT: "optimizer"},
    "runtime.adam_beta1": {LF: "adam_beta1", NOVA: f"{_N}.optim.betas[0]"},
    "runtime.adam_beta2": {LF: "adam_beta2", NOVA: f"{_N}.optim.betas[1]"},
    "runtime.adam_epsilon": {LF: "adam_epsilon", NOVA: f"{_N}.optim.eps"},
    "runtime.weight_decay": {LF: "weight_decay", NOVA: f"{_N}.optim.weight_decay", FPT: "weight_decay"},
    "runtime.max_grad_norm": {LF: "max_grad_norm", NOVA: "training_config.trainer.gradient_clip_val",
                              FPT: "max_grad_norm"},
    "runtime.gradient_checkpointing": {LF: "disable_gradient_checkpointing (negated)",
                                       FPT: "disable_gradient_checkpointing (negated)"},
    "runtime.attention_implementation": {LF: "flash_attn (sdpa, disabled = eager, fa2)",
                                         FPT: "flash_attention_v2 (true = flash_attention_2)"},
    "runtime.liger_kernel": {LF: "enable_liger_kernel"},
    "runtime.lr_warmup_steps": {LF: "warmup_steps", NOVA: f"{_N}.optim.sched.warmup_steps", FPT: "lr_warmup_steps"},
    "runtime.lr_warmup_ratio": {LF: "warmup_ratio", FPT: "lr_warmup_ratio"},
    "runtime.lr_scheduler": {LF: "lr_scheduler_type", FPT: "lr_scheduler"},
    "runtime.min_lr": {LF: "lr_scheduler_kwargs.min_lr (cosine_with_min_lr)", NOVA: f"{_N}.optim.sched.min_lr"},
    "runtime.seed": {LF: "seed", FPT: "seed"},
    "runtime.full_determinism": {LF: "full_determinism", FPT: "full_determinism"},
    "preference.preference_loss": {LF: "pref_loss", FPT: "preference_loss"},
    "preference.preference_beta": {LF: "pref_beta", FPT: "preference_beta"},
    "preference.preference_ftx": {LF: "pref_ftx", FPT: "preference_ftx"},
    "preference.dpo_label_smoothing": {LF: "dpo_label_smoothing", FPT: "dpo_label_smoothing"},
    "preference.simpo_gamma": {LF: "simpo_gamma", FPT: "simpo_gamma"},
    "adapter.lora_rank": {LF: "lora_rank", FPT: "lora_rank", OCI: "loraR", WX: "peft_parameters.rank"},
    "adapter.lora_alpha": {LF: "lora_alpha", NOVA: f"{_N}.peft.lora_tuning.alpha", FPT: "lora_alpha",
                           OCI: "loraAlpha", WX: "peft_parameters.alpha"},
    "adapter.lora_dropout": {LF: "lora_dropout", NOVA: f"{_N}.peft.lora_tuning.adapter_dropout", FPT: "lora_dropout",
                             OCI: "loraDropout", WX: "peft_parameters.dropout"},
    "adapter.target_modules": {LF: "lora_target (all = all-linear)", FPT: "target_modules",
                               WX: "peft_parameters.target_modules"},
    "adapter.loraplus_lr_ratio": {LF: "loraplus_lr_ratio", NOVA: f"{_N}.peft.lora_tuning.loraplus_lr_ratio"},
    "adapter.merge_adapter": {FPT: "merge_adapter"},
    "adapter.prompt_tuning_init": {WX: "init_method"},
    "adapter.prompt_tuning_init_text": {WX: "init_text"},
    "adapter.freeze_trainable_layers": {LF: "freeze_trainable_layers"},
    "eval.evaluation_strategy": {LF: "eval_strategy", NOVA: "training_config.trainer.val_check_interval (steps)",
                                 FPT: "evaluation_strategy"},
    "eval.eval_steps": {LF: "eval_steps", NOVA: "training_config.trainer.val_check_interval", FPT: "eval_steps"},
    "eval.logging_steps": {LF: "logging_steps", NOVA: "training_config.trainer.log_every_n_steps",
                           FPT: "logging_steps", OCI: "logModelMetricsIntervalInSteps"},
    "eval.checkpoint_strategy": {LF: "save_strategy", FPT: "checkpoint_strategy"},
    "eval.checkpoint_steps": {LF: "save_steps", NOVA: "training_config.save_steps", FPT: "checkpoint_steps"},
    "eval.checkpoint_limit": {LF: "save_total_limit",
                              NOVA: "training_config.exp_manager.checkpoint_callback_params.save_top_k",
                              FPT: "checkpoint_limit"},
    "eval.save_best_checkpoint": {LF: "load_best_model_at_end", FPT: "save_best_checkpoint"},
    "eval.early_stopping_patience": {LF: "early_stopping_steps",
                                     NOVA: "training_config.exp_manager.early_stopping_callback_params.patience",
                                     OCI: "earlyStoppingPatience"},
    "eval.early_stopping_threshold": {NOVA: "training_config.exp_manager.early_stopping_callback_params.min_delta",
                                      OCI: "earlyStoppingThreshold"},
    "tracking.tensorboard": {LF: "report_to (tensorboard)",
                             NOVA: "training_config.exp_manager.create_tensorboard_logger"},
    "tracking.mlflow_tracking_uri": {LF: "report_to (mlflow) + MLFLOW_TRACKING_URI", NOVA: "run.mlflow_tracking_uri"},
    "tracking.mlflow_experiment": {NOVA: "run.mlflow_experiment_name"},
    "launch.run_name": {LF: "output_dir (last part)", NOVA: "run.name"},
    "launch.runs_dir": {LF: "output_dir (parent)"},
    "launch.procs_per_node": {WX: "gpu.num"},
    "launch.nodes": {NOVA: "run.replicas"},
}


def key_of(name: str) -> str:
    """The bare key path of a NAMES entry (the text before a note or a slash)."""
    return name.split(" (")[0].split(" / ")[0].split(" + ")[0].strip()

"""The `train`, `parallel` and `compress` sections as Pydantic models, and the names they accept.

A section is a list of `key = value` settings. Values are spec expressions: numbers, strings,
lists, bare words (`bf16`, `cpu`, `digits`) and calls with keyword arguments
(`adamw(lr=3e-4, weight_decay=0.01)`). Each section is one Pydantic model; an unknown key gets a
did-you-mean, a bad value a located diagnostic (nnspec.lang.sections).
"""
from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import (BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt,
                      field_validator)


class Call(BaseModel):
    """A named choice with arguments, as written `adamw(lr=3e-4)` (or a bare `adamw`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = Field(default_factory=dict)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


DATASETS = ("digits", "iris", "wine", "breast_cancer", "synthetic", "npz", "pt", "csv", "images",
            "text")
SCHEDULES = ("constant", "warmup_linear", "warmup_cosine", "one_cycle", "reduce_on_plateau")
LOSSES = ("cross_entropy", "mse", "bce", "lm")
METRICS = ("accuracy", "top_k", "perplexity", "loss")
# what each loss wants as targets: class indices, 0/1 floats or values (train.metrics builds the
# loss; check needs the same table without importing torch)
LOSS_TARGETS = {"cross_entropy": "class", "lm": "class", "mse": "value", "bce": "binary"}
LOSS_ARGS = {"cross_entropy": {"label_smoothing"}, "lm": {"label_smoothing"}, "mse": set(),
             "bce": {"pos_weight"}}
METRIC_ARGS = {"accuracy": set(), "top_k": {"k"}, "perplexity": set(), "loss": set()}


class TrainSpec(_Section):
    """How to train: data, length, optimizer, schedule, loss, metrics, checkpoints."""

    data: Call = Field(Call(name="digits"), description="data set: digits, iris, wine, "
                       "breast_cancer, synthetic(...), npz(path), pt(path), csv(path, target=...), "
                       "images(folder), text(path)")
    split: float = Field(0.8, gt=0.0, lt=1.0, description="fraction of the data used for training; "
                         "the rest is the test set (split deterministically from the seed)")
    epochs: Optional[PositiveInt] = Field(None, description="passes over the training data")
    steps: Optional[PositiveInt] = Field(None, description="optimizer steps (instead of epochs)")
    batch_size: PositiveInt = Field(64, description="global batch size (all ranks, all "
                                    "accumulation steps)")
    optimizer: Call = Field(Call(name="adamw", kwargs={"lr": 1e-3}),
                            description="adam, adamw, sgd, adagrad or any torch.optim class, with "
                            "its arguments")
    schedule: Call = Field(Call(name="constant"), description="learning-rate schedule: "
                           + ", ".join(SCHEDULES))
    loss: Call = Field(Call(name="cross_entropy"), description="cross_entropy(label_smoothing=...), "
                       "mse, bce, lm (next-token)")
    metrics: tuple[Union[str, Call], ...] = Field(("accuracy",), description="accuracy, "
                                                 "top_k(k=5), perplexity")
    clip_grad_norm: Optional[PositiveFloat] = Field(None, description="clip the gradient norm")
    seed: NonNegativeInt = Field(0, description="seeds initialization, data split and shuffling")
    eval_every: Optional[PositiveInt] = Field(None, description="evaluate every N steps (always "
                                              "at the end)")
    early_stopping: Optional[PositiveInt] = Field(None, description="stop after N evaluations "
                                                  "without improvement")
    checkpoint_every: Optional[PositiveInt] = Field(None, description="save a checkpoint every N "
                                                    "steps")
    keep_checkpoints: PositiveInt = Field(3, description="how many checkpoints to keep")


class ParallelSpec(_Section):
    """How to place the model: data parallelism, ZeRO, offload, precision, pipeline."""

    data_parallel: Union[PositiveInt, Literal["auto"]] = Field(
        "auto", description="data-parallel degree, or auto (world size / pipeline stages)")
    zero: Literal[0, 1, 2, 3] = Field(0, description="ZeRO stage")
    offload_optimizer: Literal["none", "cpu", "nvme"] = Field("none", description="where "
                                                              "optimizer states live")
    offload_param: Literal["none", "cpu", "nvme"] = Field("none", description="where parameters "
                                                          "live (ZeRO-3 only)")
    nvme_path: Optional[str] = Field(None, description="folder for nvme offload")
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="training precision")
    micro_batch: Optional[PositiveInt] = Field(None, description="samples per rank per forward "
                                               "(default: batch_size / (grad_accum x data_parallel))")
    grad_accum: PositiveInt = Field(1, description="micro-batches per optimizer step (default: "
                                    "batch_size / (micro_batch x data_parallel) when micro_batch "
                                    "is given, else 1)")
    activation_checkpointing: tuple[str, ...] = Field((), description="names or patterns of "
                                                      "blocks whose activations are recomputed")
    pipeline_stages: PositiveInt = Field(1, description="pipeline stages (1: no pipeline)")
    tensor: PositiveInt = Field(1, description="tensor-parallel degree: ranks that split each "
                                "attention and MLP (Megatron style)")
    partition: str = Field("parameters", description="how layers are split into stages: "
                           "parameters, uniform or type:REGEX")
    stage_boundaries: tuple[str, ...] = Field((), description="explicit placement: the top-level "
                                              "layers that start stages 1, 2, ...")
    comm_dtype: Literal["fp32", "fp16", "bf16"] = Field("fp32", description="precision of the "
                                                        "gradient all-reduce")


class CompressSpec(_Section):
    """How to compress the model: pruning, quantization, distillation (see nnspec.compress)."""

    prune: tuple[Call, ...] = Field((), description="pruning directives: magnitude(0.9, on=[...], "
                                    "scope=global, schedule=cubic(start=0, end=300), skip=[...]), "
                                    "random(...), channels(0.5, on=[...], norm=2), nm(2, 4, ...)")
    quantize: tuple[Call, ...] = Field((), description="quantization directives: dynamic(int8, "
                                       "on=[linear, lstm]), static(int8, calibrate=8), qat(int8), "
                                       "weight_only(int8 | int4), cast(fp16 | bf16); skip=[...]")
    distill: Optional[Call] = Field(None, description="teacher(\"teacher.nn\", weights="
                                    "\"t.safetensors\", temperature=4, alpha=0.9, "
                                    "features=[[\"student\", \"teacher\"]], mixup=0, seeds=1, "
                                    "labels=1, transfer=labelled | unlabelled)")
    finetune_epochs: NonNegativeInt = Field(0, description="epochs of training after pruning "
                                            "(and of quantization-aware training)")
    finetune_lr: Optional[PositiveFloat] = Field(None, description="learning rate of fine-tuning "
                                                 "(default: the train section's optimizer lr / 10)")
    order: tuple[Literal["distill", "prune", "quantize"], ...] = Field(
        ("distill", "prune", "quantize"), description="the order the directives apply in")
    latency_batch: PositiveInt = Field(64, description="batch size of the latency measurement")
    latency_runs: PositiveInt = Field(30, description="timed forwards per model (the median is "
                                      "reported)")
    threads: PositiveInt = Field(1, description="CPU threads of the whole run (training and "
                                 "latency): one thread measures steadily on a shared machine")

    @field_validator("prune", "quantize", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return (v,) if isinstance(v, Call) else v


class WeightsSpec(_Section):
    """How checkpoint names and layouts map onto the model's state_dict (nnspec.weights): read
    from a checkpoint: drop, then rename, then transpose; written: transpose, then export_rename."""

    rename: tuple[tuple[str, str], ...] = Field((), description="[[REGEX, REPLACEMENT], ...]: "
                                                "checkpoint name -> model name, applied in order")
    drop: tuple[str, ...] = Field((), description="fnmatch patterns of checkpoint keys to ignore "
                                  "(buffers such as attn.masked_bias)")
    transpose: tuple[str, ...] = Field((), description="fnmatch patterns of model keys whose 2-d "
                                       "weights the checkpoint stores transposed (GPT-2's Conv1D)")
    export_rename: tuple[tuple[str, str], ...] = Field((), description="[[REGEX, REPLACEMENT], "
                                                       "...]: model name -> name written by "
                                                       "export (default: the model names)")
    hf_architecture: Optional[str] = Field(None, description="the transformers class a Hugging "
                                           "Face folder is for, e.g. GPT2LMHeadModel")
    hf_config: Optional[Call] = Field(None, description="config.json as MODEL_TYPE(key=value, "
                                      "...); a bare word names a model parameter, e.g. "
                                      "gpt2(n_embd=n_embd, n_layer=n_layer)")


ENSEMBLE_COMBINE = ("mean_probs", "mean_logits", "vote", "learned")
ENSEMBLE_VARY = ("seed", "bootstrap", "subset")


class EnsembleSpec(_Section):
    """An ensemble of members trained apart and combined in one module's forward (nnspec.ensemble).

    Absent section: no ensemble. Every member gets its own initialization seed (train.seed + i);
    `vary` adds how their training data differ."""

    members: Union[PositiveInt, tuple[Union[str, Call], ...]] = Field(
        1, description="N copies of the spec's model, or a list of the file's models and blocks "
        "with parameter values: [digits_mlp, digits_mlp(hidden=64), small_cnn]")
    combine: Literal["mean_probs", "mean_logits", "vote", "learned"] = Field(
        "mean_probs", description="mean of probabilities, mean of logits, majority vote, or "
        "learned weights (fitted after the members)")
    vary: Union[str, Call] = Field("seed", description="how members differ in training: seed "
                                   "(initialization and shuffling), bootstrap (a sample with "
                                   "replacement of the training set), subset(fraction)")
    placement: Literal["auto", "sequential", "per_rank"] = Field(
        "auto", description="train members one after another in one process, or one member per "
        "rank under the runner; auto: per_rank when the world size equals the member count")

    @field_validator("members", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return (v,) if isinstance(v, (str, Call)) else v


SECTIONS: dict[str, type[_Section]] = {"train": TrainSpec, "parallel": ParallelSpec,
                                       "compress": CompressSpec, "weights": WeightsSpec,
                                       "ensemble": EnsembleSpec}


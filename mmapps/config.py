"""Typed run configuration: core defaults <- domain recipe <- YAML file <- ``--set a.b=c`` overrides.

The resolved config is saved as ``config.yaml`` in every run directory and is enough to rebuild
the model for inference. An invalid value fails at start with the field, the value and what is
allowed (`ConfigError`).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mmapps.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    """Where the data is and how to read it.

    ``root`` unset means the domain's demo data (written once into ``demo_dir``).
    ``options`` holds domain-specific fields, validated by the domain's ``data_options`` model.
    """

    root: Path | None = None
    demo_n: int = Field(200, ge=4, description="number of demo samples to write when root is unset")
    demo_dir: Path | None = Field(None, description="where demo data is cached (default: ~/.cache/mmapps/<domain>-demo-<n>)")
    on_error: Literal["skip", "stop"] = "skip"
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(0, description="DataLoader worker processes; auto = usable cores (per process of a node) - 1, persistent, pinned memory on CUDA")
    cache_dir: Path | None = Field(None, description="deprecated spelling of cache.dir (kept for existing configs); cache.dir wins when both are set")
    label_budget: int | None = Field(None, ge=1, description="train on this many labelled train samples, drawn by seed and stratified so that every label with positives has one (mmapps.data.label_budget); None = all")
    label_budget_val: int | None = Field(None, ge=0, description="with label_budget: labelled validation samples kept the same way; 0 = no validation (the last weights are tested); None = all")
    label_budget_seed: int | None = Field(None, description="seed of the labelled-subset draw; None = the run seed")
    split_seed: int | None = Field(None, description="seed of the train/val/test split and of seeded demo data; None = the run seed. Fix it to compare several seeds on one test split (the label-efficiency study does)")
    options: dict[str, Any] = Field(default_factory=dict)


class CacheConfig(_Strict):
    """The preprocessed-sample cache (`mmapps.data.cache`): on by default, signed entries, size-capped with LRU eviction."""

    enabled: bool = Field(True, description="false: preprocess every sample in every epoch")
    dir: Path | None = Field(None, description="cache folder; default $MMAPPS_CACHE_DIR, else ~/.cache/mmapps/samples (XDG_CACHE_HOME honoured)")
    key: Literal["stat", "content"] = Field("stat", description="stat: (path, size, mtime) per source file; content: SHA-256 of the bytes (survives copies and touches)")
    max_size_gb: float = Field(10.0, gt=0, description="size cap of the whole cache folder; least recently used entries are evicted beyond it")
    frozen_features: bool = Field(True, description="also keep frozen encoders' outputs (a frozen text encoder's token features) on disk, shared by later runs (mmapps.models.frozen_features)")


class EncoderConfig(_Strict):
    """An encoder registry name and its keyword arguments."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class FusionConfig(_Strict):
    name: str = "attention"
    options: dict[str, Any] = Field(default_factory=dict)
    per_timestep: bool = Field(False, description="fuse each time step of time-aligned encoders")
    modality_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="probability of dropping a present modality per sample in training")


class HeadConfig(_Strict):
    name: str | None = Field(None, description="head registry name; None -> the task's declared head")
    options: dict[str, Any] = Field(default_factory=dict)


class PrunedConfig(_Strict):
    """Written by `mmapps <domain> prune` (never by hand): how the pruned model differs from the one its recipe builds."""

    method: Literal["channels", "magnitude"] = Field(description="channels: structured (torch-pruning); magnitude: unstructured zeros")
    amount: float = Field(ge=0.0, lt=1.0, description="share of channels (or weights) removed in the pruned layers")
    kept_layers: dict[str, list[int]] = Field(default_factory=dict, description="layer-list module path -> indices kept (text encoder layer dropping)")
    shapes: dict[str, list[int]] = Field(default_factory=dict, description="state-dict key -> shape, for every tensor pruning resized")


class ModelConfig(_Strict):
    dim: int = Field(128, ge=1, description="shared width that encoders project to")
    encoders: dict[str, EncoderConfig] = Field(default_factory=dict)
    fusion: FusionConfig = Field(default_factory=FusionConfig)
    heads: dict[str, HeadConfig] = Field(default_factory=dict)
    modalities: list[str] | None = Field(None, description="subset of modalities to use (single-modality baselines); None = all")
    options: dict[str, Any] = Field(default_factory=dict)
    pruned: PrunedConfig | None = Field(None, description="set by `prune`: the pruned architecture (see mmapps.prune.structure)")


class TrainConfig(_Strict):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_fraction: float = Field(0.05, ge=0, lt=1, description="share of optimiser steps spent in linear warm-up before cosine decay")
    grad_accum_steps: int = Field(1, ge=1)
    grad_clip: float | None = Field(1.0, gt=0)
    precision: Literal["auto", "32", "bf16"] = Field("auto", description="auto = bf16 autocast on CUDA, fp32 on CPU")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1, description="torch intra-op CPU threads (None: torch's default); 1 avoids oversubscription on small shared machines")
    patience: int | None = Field(None, ge=1, description="early stopping: validations (epochs, or with val_every_steps every N steps) without improvement of the primary metric")
    val_every_steps: int | None = Field(None, ge=1, description="validate (select the best weights, count patience) only at the end of the epochs that reach a new multiple of N optimiser steps, and the last; None = every epoch (many tiny epochs under a small label budget)")
    deterministic: bool = False
    max_steps_per_epoch: int | None = Field(None, ge=1)
    max_steps: int | None = Field(None, ge=1, description="train exactly this many optimiser steps (epochs = as many as needed, the last one cut short); overrides epochs")
    checkpoint_every: int = Field(1, ge=1, description="save the resumable checkpoint every N epochs")
    checkpoint_every_steps: int | None = Field(None, ge=1, description="also save the resumable checkpoint every N optimiser steps inside an epoch; a resume continues at the next batch")
    log_every_steps: int = Field(50, ge=1, description="read the running training loss from the device every N steps (progress display); no host sync in between")
    tensorboard: bool = True
    progress: bool = True
    find_unused_parameters: bool = Field(False, description="DDP option for models with branches unused in some steps")


class EvalConfig(_Strict):
    bootstrap_resamples: int = Field(1000, ge=0)
    ci_level: float = Field(0.95, gt=0, lt=1)
    options: dict[str, Any] = Field(default_factory=dict)


class PretrainConfig(_Strict):
    """Self-supervised multimodal pretraining (`mmapps <domain> pretrain`); see docs/pretraining.md.

    A modality name in ``loss_weights`` or ``mask_ratio`` that the domain lacks is refused when the
    pretraining starts (the config alone does not know the domain's modalities).
    """

    mask_ratio: dict[str, Annotated[float, Field(ge=0.0, lt=1.0)]] = Field(default_factory=dict, description="modality -> share of its mask units hidden, in [0, 1); unset = the encoder kind's default (image 0.6, windows/time 0.6, columns 0.3, frozen note hidden whole 0.5, masked tokens 0.15)")
    loss_weights: dict[str, Annotated[float, Field(ge=0.0)]] = Field(default_factory=dict, description="modality -> lambda_m of L = sum_m lambda_m L_m (default 1.0); 0 removes that modality's loss and gradient")
    contrastive_weight: float = Field(0.1, ge=0.0, description="lambda_c of the symmetric InfoNCE between modalities' pooled embeddings (learnable temperature); 0 = off")
    temperature: float = Field(0.07, gt=0.0, lt=1.0, description="initial InfoNCE temperature (learned)")
    normalize_by_trivial: bool = Field(False, description="divide each L_m by its per-position-mean predictor's loss, estimated on the pool before training")
    uncertainty_weighting: bool = Field(False, description="learn one log-variance s_m per modality: lambda_m (exp(-s_m) L_m + s_m) (Kendall et al. 2018)")
    frozen_text_target: Literal["sentence", "tokens"] = Field("tokens", description="a frozen text encoder's hidden-note target: tokens = its layer-normed token features (one unit per token); sentence = its mean-pooled sentence embedding, layer-normed (one unit per note: what the note says rather than where its words fall)")
    whole_modality: float = Field(0.15, ge=0.0, lt=1.0, description="per sample, probability of hiding one optional modality entirely (reconstructed from the others); never all of a sample's modalities")
    block: int = Field(2, ge=1, description="mask units per contiguous block for time/window masking")
    decoder_layers: int = Field(2, ge=1, description="transformer layers of each per-modality decoder (discarded after pretraining)")
    decoder_dim: int | None = Field(None, ge=8, description="decoder width; None = model.dim")
    decoder_heads: int = Field(4, ge=1)
    held_out: float = Field(0.1, gt=0.0, lt=0.5, description="share of the train split's groups held out for the reconstruction loss that selects and stops (early stopping)")
    statistics_batches: int = Field(8, ge=1, description="pool batches read before training for target statistics and the trivial-predictor losses")
    report_samples: int = Field(3, ge=0, description="held-out samples pictured (original / masked / reconstructed) in the report")
    shuffle_pairs: bool = Field(False, description="control: each pool sample's modalities re-paired with other samples' (a fixed derangement keyed on the seed, across groups), so cross-modal objectives see no true pair; the held-out set keeps its pairs")
    train: dict[str, Any] = Field(default_factory=dict, description="train.* values used when pretraining, over the recipe's (a domain's pretraining schedule); --set train.x still wins")
    options: dict[str, Any] = Field(default_factory=dict, description="domain-specific pretraining options, validated by the domain's Domain.pretrain hook (e.g. driving block_m, z_bins; surveillance lookahead, next_window)")


class PartFinetuneConfig(_Strict):
    """How one part (an encoder, by modality name, or ``fusion``) is adapted; see `mmapps.finetune`."""

    mode: Literal["as_built", "full", "frozen", "last_n", "lora", "ia3"] = Field("as_built", description="as_built: the part's own options (e.g. the text encoder's finetune); full; frozen (norm statistics too); last_n layers; lora or ia3 adapters (peft)")
    last_n: int = Field(1, ge=1, description="last_n: trailing layers trained (the part's modules after its layer stack always are)")
    rank: int = Field(8, ge=1, description="lora: rank r")
    alpha: float = Field(16.0, gt=0, description="lora: scaling alpha (update scaled by alpha / rank)")
    dropout: float = Field(0.0, ge=0, lt=1, description="lora: dropout on the adapter input")
    target_modules: list[str] | None = Field(None, description="lora/ia3: module names (suffixes) inside the part; None = its attention projections, else every Linear/Conv")


class FinetuneConfig(_Strict):
    """How `train` adapts each encoder and the fusion (full, frozen, last-N layers, LoRA/IA3); see docs/pretraining.md."""

    parts: dict[str, PartFinetuneConfig] = Field(default_factory=dict, description="part name (a modality, or fusion) -> its mode; heads are always trained")
    save_adapters: bool = Field(True, description="with lora/ia3 parts: also write checkpoints/adapters.safetensors (adapter and head weights only); best/last.safetensors are merged, normal checkpoints")


class RunConfig(_Strict):
    domain: str
    recipe: str = "default"
    seed: int = 0
    out_dir: Path | None = Field(None, description="run directory; default runs/<domain>-<recipe>-<timestamp>")
    data: DataConfig = Field(default_factory=DataConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge nested dicts; values of `override` win, dicts merge recursively."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_override(text: str) -> dict[str, Any]:
    """``"train.lr=3e-4"`` -> ``{"train": {"lr": 0.0003}}``; the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. --set train.lr=3e-4")
    value = yaml.safe_load(raw) if raw.strip() else None
    if isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string
        try:
            value = float(value)
        except ValueError:
            pass
    nested: dict[str, Any] = {}
    cursor = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return nested


def read_yaml_config(path: Path) -> dict[str, Any]:
    """Read a config YAML file; it may name a ``recipe`` and override any field."""
    if not Path(path).is_file():
        raise ConfigError(f"config file {path}: not found")
    try:
        content = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path}: not valid YAML ({err})") from None
    if not isinstance(content, dict):
        raise ConfigError(f"config file {path}: expected a mapping of fields at the top level, found {type(content).__name__}")
    return content


def validate_config(values: Mapping[str, Any]) -> RunConfig:
    """Validate a nested dict into a `RunConfig`, turning pydantic errors into one readable `ConfigError`."""
    try:
        return RunConfig.model_validate(values)
    except ValidationError as err:
        lines = []
        for problem in err.errors():
            field = ".".join(str(part) for part in problem["loc"])
            found = problem.get("input")
            lines.append(f"{field}: {problem['msg']} (found {found!r})")
        raise ConfigError("invalid configuration: " + "; ".join(lines)) from None


def validate_options(model: type[BaseModel], values: Mapping[str, Any] | None, where: str) -> Any:
    """Validate a domain's options dict (e.g. ``cfg.data.options``) with its pydantic `model`.

    Raises:
        ConfigError: one message naming every bad field as ``<where>.<field>``, the value found and the rule.
    """
    try:
        return model.model_validate(dict(values or {}))
    except ValidationError as err:
        problems = "; ".join(f"{where}.{'.'.join(map(str, p['loc']))}: {p['msg']} (found {p.get('input')!r})" for p in err.errors())
        raise ConfigError(f"invalid {where}: {problems}") from None


def config_to_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)

"""The models of an evaluation: a ``--models`` entry resolved to a :class:`ModelSpec` (hub id, local path, adapter,
or a `pkpo-train` run directory), an adapter checked against its base model on an empty model before anything is
loaded, and the loading itself (transformers, or one vLLM engine per base model)."""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import deprecations  # noqa: F401  (hides transformers' renaming warnings that TRL and peft trigger)
from ..run_dir import RUN_CONFIG_FILE
from .errors import EvalInputError

__all__ = ["ADAPTER_CONFIG_FILE", "ModelSpec", "adapter_rank", "by_base", "check_adapter", "check_tokenizer",
           "default_device",
           "load_config", "load_model", "load_vllm_engine", "resolve_dtype", "resolve_model"]  # fmt: skip

ADAPTER_CONFIG_FILE = "adapter_config.json"


@dataclass
class ModelSpec:
    """One model to evaluate: ``base`` (hub id, path or the demo model) with an optional PEFT ``adapter``."""

    label: str
    base: str
    gguf_file: str | None = None
    adapter: str | None = None
    run_config: dict[str, Any] | None = None  # the pkpo-train run config, when given a run directory

    def identity(self) -> dict[str, Any]:
        """What determines the samples (goes into the cache header)."""
        return {"base": self.base, "gguf_file": self.gguf_file, "adapter": self.adapter}


def _looks_like_path(name: str) -> bool:
    # A hub id is "name" or "org/name"; anything else with a separator or a leading ./ ~ is a local path, and so is
    # "dir/name" where dir is a local directory (`runs/quickstrat`: a typo, not a hub id to try 5 times online).
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name:
        return True
    return "/" in name and Path(name).parent.is_dir()


def _missing_path_message(entry: str) -> str:
    path = Path(entry).expanduser()
    message = f"Model {entry!r}: no such file or directory."
    if path.parent.is_dir():
        siblings = [p.name for p in path.parent.iterdir()]
        if close := difflib.get_close_matches(path.name, siblings, n=1):
            message = message[:-1] + f" (did you mean {str(path.parent / close[0])!r}?)"
    return message


def resolve_model(entry: str, adapter: str | None = None, label: str | None = None, gguf_file: str | None = None):
    """The :class:`ModelSpec` of a ``--models`` entry (and its ``--adapters`` entry).

    A directory with ``pkpo_run_config.json`` is a pkpo-train run: its base model, with the directory as
    adapter when it holds one (else the directory is the fine-tuned model). A directory with
    ``adapter_config.json`` alone is an adapter on the base model it names.

    Raises:
        EvalInputError: a local path that does not exist, or an adapter directory without an adapter.
    """
    from ..models import DEMO_MODEL

    path = Path(entry).expanduser()
    spec_label = label or (path.name if path.name else entry)
    if adapter is not None and str(adapter).lower() in ("none", ""):
        adapter = None
    if path.is_dir() and (path / RUN_CONFIG_FILE).is_file():
        try:
            run_config = json.loads((path / RUN_CONFIG_FILE).read_text())
            base = run_config["model"]["model_name_or_path"]
        except (OSError, ValueError, KeyError) as exc:
            raise EvalInputError(f"{path / RUN_CONFIG_FILE} is not a readable pkpo-train run config: {exc}") from exc
        run_gguf = run_config.get("script", {}).get("gguf_file")
        if (path / ADAPTER_CONFIG_FILE).is_file():
            if adapter is not None:
                raise EvalInputError(f"{entry} is a LoRA run directory already; it takes no --adapters entry.")
            return ModelSpec(spec_label, base, run_gguf or gguf_file, str(path), run_config)
        return ModelSpec(spec_label, str(path), None, adapter, run_config)
    if path.is_dir() and (path / ADAPTER_CONFIG_FILE).is_file() and not (path / "config.json").is_file():
        base = json.loads((path / ADAPTER_CONFIG_FILE).read_text()).get("base_model_name_or_path")
        if not base:
            raise EvalInputError(f"The adapter {entry} does not name its base model; pass it with --adapters.")
        return ModelSpec(spec_label, base, gguf_file, str(path))
    if entry != DEMO_MODEL and not path.exists() and _looks_like_path(entry):
        raise EvalInputError(_missing_path_message(entry))
    if adapter is not None and not (Path(adapter) / ADAPTER_CONFIG_FILE).is_file():
        raise EvalInputError(f"Adapter {adapter!r}: no {ADAPTER_CONFIG_FILE} there (not a PEFT adapter directory).")
    return ModelSpec(spec_label, entry, gguf_file, str(adapter) if adapter else None)


def check_tokenizer(spec: ModelSpec) -> None:
    """Refuse a local model directory (``spec.base``) that holds no tokenizer files (:func:`pkpo_trl.models.
    check_tokenizer_files`); a GGUF file carries its own.

    Raises:
        EvalInputError: naming the directory and the files looked for.
    """
    from ..models import check_tokenizer_files

    try:
        check_tokenizer_files(spec.base, spec.gguf_file)
    except ValueError as err:
        raise EvalInputError(str(err)) from None


def load_config(spec: ModelSpec):
    """The transformers config of ``spec``'s base model (read once per base: a GGUF file takes seconds)."""
    from transformers import AutoConfig

    from ..models import resolve_model_path

    try:
        path, gguf = resolve_model_path(spec.base, spec.gguf_file)
        return AutoConfig.from_pretrained(path, **({"gguf_file": gguf} if gguf else {}))
    except Exception as exc:  # transformers raises OSError/ValueError/EnvironmentError variants
        raise EvalInputError(f"Cannot load the model {spec.base!r} (for {spec.label!r}): {exc}") from exc


def _adapter_state_shapes(adapter: str) -> dict[str, tuple[int, ...]]:
    directory = Path(adapter)
    if (directory / "adapter_model.safetensors").is_file():
        from safetensors import safe_open

        with safe_open(str(directory / "adapter_model.safetensors"), framework="pt") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}  # noqa: SIM118
    if (directory / "adapter_model.bin").is_file():
        state = torch.load(directory / "adapter_model.bin", map_location="meta", weights_only=True)
        return {key: tuple(value.shape) for key, value in state.items()}
    raise EvalInputError(f"Adapter {adapter!r} has no adapter_model.safetensors or adapter_model.bin.")


def check_adapter(spec: ModelSpec, config) -> None:
    """Check that every LoRA matrix of ``spec.adapter`` fits a module of the base model, on an empty (meta)
    model built from ``config``: ``lora_A`` is ``[r, in_features]``, ``lora_B`` is ``[out_features, r]``.

    Raises:
        EvalInputError: a module is missing or has other dimensions (an adapter for another base model).
    """
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    shapes = _adapter_state_shapes(spec.adapter)
    named = json.loads((Path(spec.adapter) / ADAPTER_CONFIG_FILE).read_text()).get("base_model_name_or_path")
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    for key, shape in shapes.items():
        for part, dim in ((".lora_A.", 1), (".lora_B.", 0)):
            if part not in key:
                continue
            name = key.split(part)[0].removeprefix("base_model.model.")
            try:
                module = model.get_submodule(name)
            except AttributeError:
                module = None
            features = getattr(module, "in_features" if dim == 1 else "out_features", None)
            if features != shape[dim]:
                found = "has no such module" if module is None else f"has {features} there"
                raise EvalInputError(
                    f"Adapter {spec.adapter!r} does not fit the base model {spec.base!r}: its {key} has shape "
                    f"{list(shape)}, the base model {found}. The adapter was trained on {named!r}."
                )


def resolve_dtype(dtype: str, device: str) -> str:
    """``dtype`` with ``"auto"`` made concrete: bfloat16 on a GPU, float32 on a CPU."""
    if dtype == "auto":
        return "bfloat16" if device == "cuda" else "float32"
    return dtype


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(spec: ModelSpec, dtype: str = "auto", device: str | None = None, adapter: bool = True):
    """``(model, tokenizer)`` of ``spec`` in eval mode, its adapter (unless ``adapter=False``) merged into the
    weights."""
    from ..models import load_model_and_tokenizer

    device = device or default_device()
    dtype = resolve_dtype(dtype, device)
    model, tokenizer = load_model_and_tokenizer(spec.base, gguf_file=spec.gguf_file, torch_dtype=dtype)
    if spec.adapter and adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, spec.adapter).merge_and_unload()
    return model.to(device).eval(), tokenizer


def by_base(specs: list[ModelSpec]) -> dict[tuple[str, str | None], list[ModelSpec]]:
    """``specs`` grouped by base model (and GGUF file), in order: each group is loaded once."""
    groups: dict[tuple[str, str | None], list[ModelSpec]] = {}
    for spec in specs:
        groups.setdefault((spec.base, spec.gguf_file), []).append(spec)
    return groups


def adapter_rank(spec: ModelSpec) -> int:
    """The LoRA rank ``r`` of ``spec``'s adapter (0 without one)."""
    if not spec.adapter:
        return 0
    return json.loads((Path(spec.adapter) / ADAPTER_CONFIG_FILE).read_text())["r"]


def load_vllm_engine(
    spec: ModelSpec, seed: int, max_lora_rank: int, max_model_len: int | None, gpu_memory_utilization: float
):
    """A ``vllm.LLM`` of ``spec``'s base model, with LoRA enabled up to ``max_lora_rank`` (0: no adapters)."""
    from vllm import LLM

    from ..models import resolve_model_path

    path, gguf = resolve_model_path(spec.base, spec.gguf_file)
    model = str(Path(path) / gguf) if gguf else path
    return LLM(
        model=model,
        tokenizer=path if not gguf else None,
        seed=seed,
        enable_lora=max_lora_rank > 0,
        max_lora_rank=max(8, 1 << (max_lora_rank - 1).bit_length()),  # vLLM takes 8, 16, 32, ... only
        max_model_len=max_model_len,
        gpu_memory_utilization=gpu_memory_utilization,
    )

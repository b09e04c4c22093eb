"""The drop-in snippets, read from the docs themselves so that they cannot drift: the CPU one
(`<!-- dropin-cpu -->`, docs/trainer.md) runs as written; the GPU one (`<!-- dropin-gpu -->`, README.md) needs
vLLM, bf16 and the hub, so its `PKPOConfig(...)` arguments go through TRL's `GRPOConfig` post-init with their real
values (the batch rules) and through `PKPOConfig` (the PKPO rules), and its settings are checked against the recipe
it mirrors. `tests/helpers.py` finds each block wherever it lives in README.md and docs/*.md."""

from __future__ import annotations

import ast
from typing import Any

import yaml
from helpers import README, ROOT, doc_name, marked_block


def test_the_gpu_snippet_is_the_readmes():
    assert marked_block("dropin-gpu")[0] == README  # the front door shows the drop-in use


def _call_kwargs(source: str, callee: str) -> dict[str, Any]:
    """The keyword arguments of the one call to ``callee`` in ``source``, evaluated after the source's imports."""
    tree = ast.parse(source)
    namespace: dict[str, Any] = {}
    imports = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    exec(compile(ast.Module(body=imports, type_ignores=[]), "dropin-gpu", "exec"), namespace)
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == callee
    ]
    assert len(calls) == 1, f"{callee} is called {len(calls)} times"
    return {
        kw.arg: eval(compile(ast.Expression(kw.value), "dropin-gpu", "eval"), namespace)  # noqa: S307 (our docs)
        for kw in calls[0].keywords
    }


def test_cpu_dropin_snippet_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # its output_dir is relative
    namespace: dict[str, Any] = {}
    path, source = marked_block("dropin-cpu")
    exec(compile(source, f"{doc_name(path)}:dropin-cpu", "exec"), namespace)
    trainer = namespace["trainer"]
    assert trainer.state.global_step == trainer.args.max_steps == 2
    assert [log["pkpo/k"] for log in trainer.state.log_history if "pkpo/k" in log]  # PKPO ran, not plain GRPO


def test_gpu_dropin_snippet_config_meets_the_batch_and_pkpo_rules(tmp_path):
    from trl import GRPOConfig

    from pkpo_trl import PKPOConfig

    kwargs = _call_kwargs(marked_block("dropin-gpu")[1], "PKPOConfig")
    kwargs["output_dir"] = str(tmp_path)
    assert kwargs["use_vllm"] is True and kwargs["bf16"] is True
    # TRL's batch rules with the real use_vllm / bf16 values (use_cpu only lets bf16 pass on this GPU-less
    # machine); PKPOConfig itself refuses use_vllm=True while vLLM is not installed, so it gets the PKPO rules.
    pkpo_keys = {name for name in kwargs if name.startswith("pkpo_")}
    trl_config = GRPOConfig(**{k: v for k, v in kwargs.items() if k not in pkpo_keys}, use_cpu=True)
    assert trl_config.world_size == 1
    assert trl_config.generation_batch_size % trl_config.num_generations == 0
    assert trl_config.learning_rate > GRPOConfig.learning_rate  # not TRL's 1e-6 default
    PKPOConfig(**{**kwargs, "use_vllm": False, "bf16": False, "use_cpu": True})


def _resolved_pkpo_options(fields: dict[str, Any], tmp_path) -> dict[str, Any]:
    """What ``PKPOConfig`` trains with given ``fields``' PKPO options (a default resolved as PKPOConfig does)."""
    from pkpo_trl import PKPOConfig

    names = ("pkpo_k", "pkpo_estimator", "scale_rewards")
    given = {name: fields[name] for name in names if name in fields}
    config = PKPOConfig(str(tmp_path), use_cpu=True, report_to="none", num_generations=fields["num_generations"],
                        per_device_train_batch_size=fields["num_generations"], **given)  # fmt: skip
    spec = config.k_spec()  # the k of each step, however it is spelled ("8" or 8, "harmonic" or "harmonic:16")
    return {**{name: getattr(config, name) for name in names}, "pkpo_k": (spec.kind, spec.points, spec.adaptive_min)}


def test_gpu_dropin_snippet_matches_its_recipe(tmp_path):
    source = marked_block("dropin-gpu")[1]
    config = _call_kwargs(source, "PKPOConfig")
    lora = _call_kwargs(source, "LoraConfig")
    recipe = yaml.safe_load((ROOT / "recipes" / "gemma2_2b_it_gsm8k_lora_vllm.yaml").read_text())
    for key in (
        "num_generations", "per_device_train_batch_size", "gradient_accumulation_steps", "max_completion_length",
        "learning_rate", "max_steps", "use_vllm", "vllm_mode", "vllm_gpu_memory_utilization", "bf16",
        "gradient_checkpointing",
    ):  # fmt: skip
        assert config[key] == recipe[key], key
    # The snippet may leave PKPO's options at their defaults where the recipe writes them out: the same training.
    assert _resolved_pkpo_options(config, tmp_path) == _resolved_pkpo_options(recipe, tmp_path)
    assert config["model_init_kwargs"]["dtype"] == recipe["dtype"]
    assert config["model_init_kwargs"]["attn_implementation"] in ("eager", "flash_attention_2")  # never sdpa
    assert (lora["r"], lora["lora_alpha"], lora["lora_dropout"]) == (
        recipe["lora_r"],
        recipe["lora_alpha"],
        recipe["lora_dropout"],
    )
    assert f'model="{recipe["model_name_or_path"]}"' in source

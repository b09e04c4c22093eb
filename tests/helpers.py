"""Helpers shared by the tests.

Reading the documentation (README.md and docs/*.md) from tests: the marked code blocks that tests run, and the
bash blocks whose commands tests check. A block is found wherever it lives, so text can move between pages without
a test losing it; a marker that appears twice, or nowhere, fails.

Training a real tiny Gemma-2 on CPU (:func:`train`), with the trainers recording what reached the loss, and the
rewards and prompts those tests use.

The package's import graph (:func:`package_imports`), read from the source, every import counted (also those
inside functions or under ``TYPE_CHECKING``)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from datasets import Dataset
from trl import GRPOTrainer

from pkpo_trl import PKPOConfig, PKPOTrainer
from pkpo_trl.tiny import build_char_tokenizer, build_tiny_gemma2

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def doc_files() -> list[Path]:
    """README.md, then every page under docs/ (sorted)."""
    return [README, *sorted(DOCS.glob("*.md"))]


def doc_name(path: Path) -> str:
    """A documentation file's path relative to the repository root, e.g. ``docs/trainer.md``."""
    return path.relative_to(ROOT).as_posix()


def marked_block(name: str, lang: str = "python") -> tuple[Path, str]:
    """``(file, code)`` of the one ```` ```lang ```` block between ``<!-- name -->`` and ``<!-- /name -->`` in the
    documentation."""
    pattern = re.compile(rf"<!-- {re.escape(name)} -->\n```{lang}\n(.*?)```\n<!-- /{re.escape(name)} -->", re.S)
    found = [(path, match.group(1)) for path in doc_files() for match in pattern.finditer(path.read_text())]
    assert len(found) == 1, f"the {name} block appears {len(found)} times in README.md and docs/*.md"
    return found[0]


def bash_lines(path: Path) -> list[str]:
    """Every line of the ```` ```bash ```` blocks of one documentation file."""
    blocks = re.findall(r"```bash\n(.*?)```", path.read_text(), re.S)
    return [line for block in blocks for line in block.splitlines()]


def package_imports(module: str) -> set[str]:
    """The ``pkpo_trl`` modules (and packages) that ``module`` (e.g. ``"pkpo_trl.plotting"``) imports anywhere in
    its source, relative imports resolved: ``from .x import y`` counts as ``pkg.x`` and, when ``pkg.x.y`` is a
    module, as that too."""
    parts = module.split(".")
    path = ROOT.joinpath(*parts)
    is_package = path.is_dir()
    source = path / "__init__.py" if is_package else path.with_suffix(".py")
    package = parts if is_package else parts[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(target)
            for alias in node.names:
                name = f"{target}.{alias.name}"
                if (
                    ROOT.joinpath(*name.split(".")).with_suffix(".py").is_file()
                    or ROOT.joinpath(*name.split(".")).is_dir()
                ):
                    found.add(name)
    return {name for name in found if name == "pkpo_trl" or name.startswith("pkpo_trl.")}


# ---------------------------------------------------------------------------------------------------------
# Training a tiny model
# ---------------------------------------------------------------------------------------------------------

N_GEN = 4


def prompt_dataset(num: int = 16) -> Dataset:
    return Dataset.from_dict({"prompt": [f"{i}+{i % 7}=" for i in range(num)], "answer": [str(i) for i in range(num)]})


def binary_reward(completion_ids, **kwargs) -> list[float]:
    """Deterministic in the sampled tokens, so both values appear in most groups."""
    return [float(sum(ids) % 2) for ids in completion_ids]


def continuous_reward(completion_ids, **kwargs) -> list[float]:
    return [float(sum(ids) % 7) / 3.0 - 1.0 for ids in completion_ids]


class RecordingTrainerMixin:
    """Keeps what reached the loss and what TRL's `_generate_and_score_completions` returned."""

    def _compute_loss(self, model, inputs):
        self.loss_advantages.append(inputs["advantages"].detach().clone())
        loss = super()._compute_loss(model, inputs)
        self.losses.append(loss.detach().clone())
        return loss


class RecordingPKPOTrainer(RecordingTrainerMixin, PKPOTrainer):
    pass


class RecordingGRPOTrainer(RecordingTrainerMixin, GRPOTrainer):
    pass


def recording(reward_fn, store: list):
    def reward(completion_ids, **kwargs):
        values = reward_fn(completion_ids=completion_ids, **kwargs)
        store.append(list(values))
        return values

    reward.__name__ = reward_fn.__name__
    return reward


def train(
    tmp_path,
    trainer_cls=RecordingPKPOTrainer,
    config_cls=PKPOConfig,
    reward_fn=binary_reward,
    max_steps: int = 2,
    model=None,
    callbacks=None,
    peft_config=None,
    resume: str | None = None,
    eval_dataset: Dataset | None = None,
    **config,
):
    tokenizer = build_char_tokenizer()
    model = model if model is not None else build_tiny_gemma2(len(tokenizer))
    rewards: list[list[float]] = []
    defaults = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=8,
        num_generations=N_GEN,
        max_completion_length=6,
        max_steps=max_steps,
        learning_rate=5e-2,
        report_to="none",
        logging_steps=1,
        save_strategy="no",
        use_cpu=True,
        seed=0,
        gradient_checkpointing=False,
    )
    defaults.update(config)
    args = config_cls(**defaults)
    trainer = trainer_cls(
        model,
        recording(reward_fn, rewards),
        args=args,
        train_dataset=prompt_dataset(),
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        callbacks=callbacks,
        peft_config=peft_config,
    )
    trainer.loss_advantages, trainer.losses = [], []
    trainer.rewards = rewards
    trainer.train(resume_from_checkpoint=resume)
    return trainer

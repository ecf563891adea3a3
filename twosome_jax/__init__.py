"""twosome-jax: an LLM with LoRA as a PPO policy (TWOSOME) in JAX-native environments.

transformers is used here only for tokenizers and, in tests, as a reference; without PyTorch it
prints an advisory at import that says models are unavailable, which means nothing to this
package, so the advisory is switched off (unless the user has set the variable themselves).
"""

import os

os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

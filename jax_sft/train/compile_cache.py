"""JAX's persistent compilation cache, so a resumed session does not compile again.

On Kaggle a Gemma 2 2B train step takes minutes to compile; with the cache in
/kaggle/working (saved with the session's output) the next session loads it instead.
"""

from __future__ import annotations

import os
from typing import Optional

import jax


def enable(cache_dir: Optional[str], min_compile_seconds: float = 1.0) -> Optional[str]:
  """Points JAX's persistent compilation cache at `cache_dir` (created); None leaves it off.

  Returns the absolute directory used, or None. Call before the first jit compile.
  gs:// paths are passed through unchanged (JAX writes there through etils/epath).
  """
  if not cache_dir:
    return None
  if "://" not in cache_dir:
    cache_dir = os.path.abspath(os.path.expanduser(cache_dir))
    os.makedirs(cache_dir, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", cache_dir)
  # Cache every program worth keeping; tiny ones are cheaper to recompile than to read.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_seconds)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return cache_dir

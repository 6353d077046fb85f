"""Settings of the tool's own processes: the command line and the worker processes it starts.

They are process-wide and take effect only before jax is first imported, so nothing that a library
caller runs sets them (DESIGN section 5: no function changes its caller's process). `configure` is
called by the command line for the commands that check (`check`, `all`, `latex`), never by
`verify.check()`; worker processes inherit the environment it sets.

- Fast XLA compiles (`oracles.jax_vjp.FAST_COMPILES`): a check runs each program once on a few dozen
  numbers, so compile time is all that counts.
- JAX's persistent compilation cache in the user's cache folder, `$XDG_CACHE_HOME/gradverify/jax`
  (`~/.cache/gradverify/jax` when XDG_CACHE_HOME is unset), so that a repeated cold check reads the
  compiled programs instead of compiling them again. JAX keys each entry on the program, the compile
  options and the jax and jaxlib versions, so an entry is never used for a different program. Every
  program is cached, however quick its compile (JAX's default keeps only those taking a second or more).
  `GRADVERIFY_NO_JAX_CACHE=1` turns it off; a JAX_COMPILATION_CACHE_DIR already set is left as it is.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

from .oracles.jax_vjp import fast_compiles

NO_CACHE_VARIABLE = "GRADVERIFY_NO_JAX_CACHE"


def jax_cache_dir(environ: MutableMapping[str, str] = os.environ) -> Path | None:
    """The folder of JAX's persistent cache for the tool, or None when the user turned it off."""
    if environ.get(NO_CACHE_VARIABLE, "").strip() not in ("", "0"):
        return None
    base = environ.get("XDG_CACHE_HOME", "")
    # the XDG specification ignores a relative path
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache"
    return root / "gradverify" / "jax"


def configure(environ: MutableMapping[str, str] = os.environ) -> None:
    """Set up a process of the tool's own, before jax is imported: fast compiles and the persistent cache."""
    fast_compiles(environ)
    cache = jax_cache_dir(environ)
    if cache is not None and "JAX_COMPILATION_CACHE_DIR" not in environ:
        environ["JAX_COMPILATION_CACHE_DIR"] = str(cache)
        environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

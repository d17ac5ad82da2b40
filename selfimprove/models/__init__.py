"""Model kinds behind one Decoder protocol, the tokenizer, batched KV-cache generation, precision.

Every module of this package is imported here, so that each model kind's `SPEC` is registered (decoder.KINDS)."""

from __future__ import annotations

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

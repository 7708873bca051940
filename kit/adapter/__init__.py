"""The ctypes adapter to the running kernel.

Importing this package imports every module in it, so that each registers its
operations and constants (kit.registry). A new syscall family is a new module here.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

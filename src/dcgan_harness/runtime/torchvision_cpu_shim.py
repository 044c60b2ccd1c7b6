"""Let the CUDA build of torchvision import on a CPU-only torch.

Why this exists
---------------
The runtime image pairs torch 2.13.0+cpu with torchvision 0.28.0 from PyPI,
and PyPI only carries the CUDA build of that torchvision.  Its C extension
(``torchvision/_C.so``) links against ``libtorch_cuda.so``, which the CPU
torch wheel does not ship, so torchvision's own loader swallows the failure
and carries on without its C++ operators.  That alone would be harmless: the
DCGAN app uses datasets, transforms and utils, none of which need them.

What breaks is ``torchvision/_meta_registrations.py``: it attaches fake
(meta) kernels to ``torchvision::nms`` and ``torchvision::qnms`` without first
asking whether the extension loaded, and torch refuses to attach a kernel to
an operator whose schema was never defined::

    RuntimeError: operator torchvision::nms does not exist

Defining those two schemas (and nothing else) before that module runs lets
``import torchvision`` succeed.  The operators still have no real kernel, so
``torchvision.ops.nms`` keeps failing loudly with torchvision's usual
"Couldn't load custom C++ ops" error instead of computing anything wrong.

How it is installed
-------------------
Copy this file and ``torchvision-cpu-shim.pth`` side by side into the
interpreter's ``site-packages``.  The ``.pth`` line only calls ``install()``,
which puts a tiny finder at the front of ``sys.meta_path`` and imports
nothing else: Python startup does not import torch.  The finder acts once, at the moment torchvision's
package ``__init__`` asks for ``torchvision._meta_registrations``; by then
torchvision has already tried to load its extension, so the decision uses
torchvision's own verdict (``torchvision.extension._has_ops()``).  When the
extension did load, or the schemas exist already, nothing is defined.

This file deliberately imports nothing from the project so that it can live
on its own in an image's ``site-packages``.
"""

from __future__ import annotations

import sys

# The first torchvision module that needs the schemas; torchvision's
# __init__ imports it right after its extension loader.
TRIGGER_MODULE = "torchvision._meta_registrations"

# Exactly what _meta_registrations registers with torch.library.register_fake
# regardless of whether the C extension loaded. Every other operator there is
# guarded by torchvision.extension._has_ops().
UNCONDITIONAL_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}

# torch forgets the definitions when the Library object is collected,
# so it has to outlive the call that created it.
_schema_library = None

# Names of the schemas this process defined; empty when none were needed.
defined_schemas: list[str] = []


def torchvision_extension_loaded() -> bool:
    """torchvision's own verdict on whether its C++ operators are available."""
    import importlib

    extension = importlib.import_module("torchvision.extension")
    has_ops = getattr(extension, "_has_ops", None)
    return bool(has_ops()) if callable(has_ops) else False


def missing_schema_names() -> list[str]:
    import torch

    return [name for name in UNCONDITIONAL_SCHEMAS if not hasattr(torch.ops.torchvision, name)]


def define_missing_schemas() -> list[str]:
    """Define the schemas torchvision expects but could not provide; return their names."""
    global _schema_library
    if torchvision_extension_loaded():
        return []
    missing = missing_schema_names()
    if not missing:
        return []
    import torch

    if _schema_library is None:
        _schema_library = torch.library.Library("torchvision", "DEF")
    for name in missing:
        _schema_library.define(UNCONDITIONAL_SCHEMAS[name])
    defined_schemas.extend(missing)
    return missing


class TorchvisionSchemaFinder:
    """Meta-path finder that never finds anything; it only reacts to one import.

    Returning None hands the lookup back to the normal finders, so the real
    module is still loaded the usual way, just after the schemas exist.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != TRIGGER_MODULE:
            return None
        # Out of the way first: the work below imports modules too.
        uninstall()
        try:
            define_missing_schemas()
        except Exception as error:
            # Better torchvision's own error, which names the real cause, than
            # a traceback from inside the import system pointing here.
            import warnings

            warnings.warn(f"torchvision_cpu_shim could not define the torchvision schemas: {error!r}", stacklevel=2)
        return None

    def invalidate_caches(self):
        pass


def is_installed() -> bool:
    return any(isinstance(finder, TorchvisionSchemaFinder) for finder in sys.meta_path)


def install() -> None:
    """Arrange for the schemas to be defined when torchvision is first imported."""
    if TRIGGER_MODULE in sys.modules or is_installed():
        return
    # Ahead of the path finders, or it would never be asked.
    sys.meta_path.insert(0, TorchvisionSchemaFinder())


def uninstall() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, TorchvisionSchemaFinder)]

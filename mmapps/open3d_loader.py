"""Import open3d on machines without a system libusb (its Linux wheels link libusb-1.0.so.0)."""

from __future__ import annotations

import ctypes
import sys
from types import ModuleType


def import_open3d() -> ModuleType:
    """Return the open3d module, preloading the libusb that the `libusb-package` wheel ships.

    Raises:
        ImportError: with an install hint when open3d cannot be imported.
    """
    if "open3d" in sys.modules:
        return sys.modules["open3d"]
    if sys.platform.startswith("linux"):
        try:
            import libusb_package

            ctypes.CDLL(str(libusb_package.get_library_path()), mode=ctypes.RTLD_GLOBAL)
        except (ImportError, OSError, TypeError):
            pass  # a system libusb may still satisfy open3d
    try:
        import open3d
    except ImportError as err:
        raise ImportError(f"open3d could not be imported ({err}); install it with: pip install open3d-cpu libusb-package") from None
    return open3d

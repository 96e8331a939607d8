"""Reading a lab's HDF5 label file without running code that may be hidden in it.

pandas' ``read_hdf`` goes through PyTables, which unpickles node attributes and
object arrays: a planted pickle in a ``CollectedData_*.h5`` would run its code in
whichever process reads the file (the Airflow worker, started by the cohort intake
without a person looking). DeepLabCut's files need no code to rebuild: their pickles
hold only lists, tuples, dicts, strings and numbers. While ``read_hdf_without_code``
reads, PyTables' unpickling refuses every global (class or function) a pickle names,
as the ``pickle`` documentation's "Restricting Globals" recipe does.
"""

from __future__ import annotations

import io
import pickle
import threading
import types
from pathlib import Path

import pandas as pd

_PATCH_LOCK = threading.Lock()
# the dataset DeepLabCut writes its labels under, then napari-deeplabcut's: read where a file holds more than one
LABEL_KEYS = ("/df_with_missing", "/keypoints")


class CodeInPickleError(pickle.UnpicklingError):
    """The file names a class or function to call while it is read: code posesweep does not run."""


class _DataOnlyUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, refused: list[str], **kwargs):
        super().__init__(io.BytesIO(data), **kwargs)
        self.refused = refused

    def find_class(self, module: str, name: str):
        self.refused.append(f"{module}.{name}")
        raise CodeInPickleError(f"the file asks to call {module}.{name} while it is read")


def read_hdf_without_code(path: Path) -> pd.DataFrame:
    """``pd.read_hdf(path)``, with every pickle inside limited to plain data.

    Raises ``CodeInPickleError`` naming what a pickle asked to call, even where PyTables swallows the refusal
    and goes on with the raw bytes.
    """
    import tables.atom
    import tables.attributeset

    refused: list[str] = []

    def loads(data: bytes, *, fix_imports: bool = True, encoding: str = "ASCII", errors: str = "strict", **_):
        return _DataOnlyUnpickler(data, refused, fix_imports=fix_imports, encoding=encoding, errors=errors).load()

    shim = types.SimpleNamespace(**{name: getattr(pickle, name) for name in dir(pickle) if not name.startswith("_")})
    shim.loads = loads
    modules = (tables.atom, tables.attributeset)
    with _PATCH_LOCK:
        originals = [module.pickle for module in modules]
        for module in modules:
            module.pickle = shim
        try:
            frame = pd.read_hdf(path, key=_labels_key(path))
        except Exception:
            if not refused:
                raise
            frame = None
        finally:
            for module, original in zip(modules, originals):
                module.pickle = original
    if refused:
        raise CodeInPickleError(f"the file asks to call {', '.join(sorted(set(refused)))} while it is read")
    return frame


def _labels_key(path: Path) -> str | None:
    """The dataset to read: the only one, or DeepLabCut's (napari-deeplabcut's) beside others, such as a copy a
    lab's script appended as a backup (pandas refuses a file of several without a key)."""
    with pd.HDFStore(path, mode="r") as store:
        keys = store.keys()
    return next((key for key in LABEL_KEYS if key in keys), None) if len(keys) > 1 else None

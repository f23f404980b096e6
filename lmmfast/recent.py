"""The models that recent :func:`lmmfast.lmm` and :func:`lmmfast.glmm` calls prepared, kept
so that a repeated call on the same small data skips preparing them again.

Benchmark suites, teaching notebooks and the tools that call lmmfast as a backend fit one
formula to one data frame many times; preparing the model (the formula's encoding, the
matrices, the cross-products) is most of a small fit. The store holds a few of them, keyed
by everything the model depends on — the formula, the settings, and a fingerprint of the
values of the columns it reads (:mod:`lmmfast.design.fingerprint`) — so a hit is the model
the call would have prepared. What must stay true: a stored model is never modified by a
fit (each fit works on fresh copies of its factor), so sharing it between fits is safe.

Its size is the package-wide option ``model_cache`` (:func:`lmmfast.set_options`);
``model_cache=0`` turns it off and empties it.

Examples
--------
>>> store = RecentModels(size=2)
>>> store.put(("a",), "model a"); store.put(("b",), "model b"); store.put(("c",), "model c")
>>> store.get(("a",)) is None, store.get(("c",))
(True, 'model c')
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

#: How many prepared models the store keeps unless ``set_options(model_cache=...)`` says otherwise.
DEFAULT_SIZE = 8


class RecentModels:
    """A bounded store of prepared models, the least recently used dropped first; safe to
    share between threads.

    Parameters
    ----------
    size : int
        How many models it keeps (0: none).
    """

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self._entries: OrderedDict[Hashable, object] = OrderedDict()
        self._lock = threading.Lock()
        self._size = size

    @property
    def size(self) -> int:
        """How many models it keeps at most."""
        return self._size

    def __len__(self) -> int:
        return len(self._entries)

    def resize(self, size: int) -> None:
        """Keep at most ``size`` models from now on, dropping the oldest beyond it."""
        with self._lock:
            self._size = size
            self._trim()

    def clear(self) -> None:
        """Drop every stored model."""
        with self._lock:
            self._entries.clear()

    def get(self, key: Hashable) -> object | None:
        """The model stored under ``key`` (now the most recently used), or None."""
        with self._lock:
            model = self._entries.get(key)
            if model is not None:
                self._entries.move_to_end(key)
            return model

    def put(self, key: Hashable, model: object) -> None:
        """Store ``model`` under ``key``, dropping the least recently used beyond the size."""
        with self._lock:
            if self._size == 0:
                return
            self._entries[key] = model
            self._entries.move_to_end(key)
            self._trim()

    def _trim(self) -> None:
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)


#: The store that :func:`lmmfast.lmm` and :func:`lmmfast.glmm` share.
RECENT_MODELS = RecentModels()

"""The file format of saved fits: a zip archive of a JSON manifest, NumPy arrays and,
optionally, the data as Parquet.

Reading a file runs no code from it: the manifest is JSON, arrays are read with
``allow_pickle=False``, and the only objects made are those of the classes the reader
allows (dataclasses built from their fields, enums from their values), so a file from
anyone is safe to load. The layout is documented in ``docs/saving.md``:

- ``manifest.json``: ``{"format": "lmmfast-saved-fit", "format_version": 1,
  "lmmfast_version": ..., "kind": "lmm" | "glmm", "content": ...}``. ``content`` is JSON
  in which tagged objects stand for what JSON lacks: ``{"$array": "arrays/3.npy"}`` (a
  number array stored beside the manifest), ``{"$strings": [...]}`` (an array of text),
  ``{"$tuple": [...]}``, ``{"$dict": [[key, value], ...]}`` (keys that are not text),
  ``{"$float": "nan" | "inf" | "-inf"}``, ``{"$object": "module.Class", "fields": {...}}``,
  ``{"$enum": "module.Class", "value": ...}`` and ``{"$model_spec": {...}}`` (formulaic's
  model spec: its formula and the state learned from the data).
- ``arrays/<i>.npy``: NumPy's own format.
- ``data.parquet``: the rows, when the fit was saved with them.
"""

from __future__ import annotations

import dataclasses
import enum
import io
import json
import math
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lmmfast.errors import ArgumentError, SavedFitError

FORMAT = "lmmfast-saved-fit"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATA = "data.parquet"


@dataclass(frozen=True)
class Archive:
    """What a saved fit's file holds, decoded.

    Attributes
    ----------
    kind : str
        ``"lmm"`` or ``"glmm"``.
    content : dict
        The decoded manifest content.
    data : pandas.DataFrame or None
        The rows, when they were saved.
    lmmfast_version : str
        The version that wrote the file.
    """

    kind: str
    content: dict[str, Any]
    data: pd.DataFrame | None
    lmmfast_version: str


def _formulaic_classes() -> dict[str, type]:
    """formulaic's classes that its model specs hold (contrast codings, kinds of factors,
    the handling of missing values, its 'unset' marker)."""
    from formulaic.materializers.types import NAAction
    from formulaic.parser.types import Factor
    from formulaic.transforms import contrasts
    from formulaic.utils.sentinels import Sentinel

    classes: list[type] = [
        contrasts.ContrastsState,
        contrasts.TreatmentContrasts,
        contrasts.SumContrasts,
        contrasts.HelmertContrasts,
        contrasts.DiffContrasts,
        contrasts.PolyContrasts,
        contrasts.CustomContrasts,
        Factor.Kind,
        NAAction,
        Sentinel,
    ]
    return {_name(cls): cls for cls in classes}


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# --- writing ---------------------------------------------------------------------------------


class _Encoder:
    """Turns a value into JSON, setting its number arrays aside as ``.npy`` entries."""

    def __init__(self) -> None:
        self.arrays: dict[str, bytes] = {}

    def __call__(self, value: Any) -> Any:
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, enum.Enum):
            return {"$enum": _name(type(value)), "value": self(value.value)}
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return value if math.isfinite(value) else {"$float": repr(value)}
        if isinstance(value, np.generic):
            return self(value.item())
        if isinstance(value, np.ndarray):
            return self._array(value)
        if isinstance(value, list):
            return [self(item) for item in value]
        if isinstance(value, tuple):
            return {"$tuple": [self(item) for item in value]}
        if isinstance(value, Mapping):
            if all(isinstance(key, str) and not key.startswith("$") for key in value):
                return {key: self(item) for key, item in value.items()}
            return {"$dict": [[self(key), self(item)] for key, item in value.items()]}
        if type(value).__name__ == "ModelSpec":
            return {"$model_spec": self._model_spec(value)}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = {f.name: self(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
            return {"$object": _name(type(value)), "fields": fields}
        raise ArgumentError(f"A saved fit cannot hold a {type(value).__name__} ({_name(type(value))}).")

    def _array(self, array: np.ndarray) -> Any:
        if array.dtype.kind in "OUS":
            return {"$strings": [str(item) for item in array.tolist()], "shape": list(array.shape)}
        if array.dtype.kind not in "biuf":
            raise ArgumentError(f"A saved fit cannot hold an array of {array.dtype}.")
        name = f"arrays/{len(self.arrays)}.npy"
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        self.arrays[name] = buffer.getvalue()
        return {"$array": name}

    def _model_spec(self, spec: Any) -> dict[str, Any]:
        # the structure (formulaic's parsed terms) is left out: it follows from the formula
        # and the encoder state when the spec next builds a matrix
        return {
            "formula": str(spec.formula),
            "materializer": spec.materializer,
            "ensure_full_rank": bool(spec.ensure_full_rank),
            "na_action": self(spec.na_action),
            "output": spec.output,
            "transform_state": self(dict(spec.transform_state)),
            "encoder_state": self(dict(spec.encoder_state)),
        }


def write_archive(
    path: str | os.PathLike[str], kind: str, content: Mapping[str, Any], data: pd.DataFrame | None
) -> None:
    """Write a saved fit: ``content`` (see the module's notes for what it may hold) and,
    unless None, the rows ``data``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "example.lmmfast"
    >>> write_archive(path, "lmm", {"theta": np.array([0.5, 1.0])}, None)
    >>> read_archive(path, {}).content["theta"].tolist()
    [0.5, 1.0]
    """
    from lmmfast._version import __version__

    target = _checked_path(path)
    encoder = _Encoder()
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "lmmfast_version": __version__,
        "kind": kind,
        "content": encoder(dict(content)),
    }
    text = json.dumps(manifest, allow_nan=False, indent=1)
    try:
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(MANIFEST, text)
            for name, payload in encoder.arrays.items():
                archive.writestr(name, payload)
            if data is not None:
                buffer = io.BytesIO()
                data.reset_index(drop=True).to_parquet(buffer, engine="pyarrow", index=False)
                archive.writestr(DATA, buffer.getvalue())
    except OSError as error:
        raise ArgumentError(f"The fit could not be saved to {os.fspath(path)!r}: {error}.") from error


def _checked_path(path: object) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise ArgumentError(f"path must be a file name (str or pathlib.Path), got {type(path).__name__}.")
    return os.fspath(path)


# --- reading ---------------------------------------------------------------------------------


class _Decoder:
    """Turns a manifest's JSON back into values, making only objects of allowed classes."""

    def __init__(self, archive: zipfile.ZipFile, classes: Mapping[str, type]) -> None:
        self.archive = archive
        self.classes = {**_formulaic_classes(), **classes}

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self(item) for item in value]
        if not isinstance(value, dict):
            return value
        if "$array" in value:
            return self._array(value["$array"])
        if "$strings" in value:
            return np.asarray(value["$strings"], dtype=object).reshape(value.get("shape", [-1]))
        if "$tuple" in value:
            return tuple(self(item) for item in value["$tuple"])
        if "$dict" in value:
            return {_hashable(self(key)): self(item) for key, item in value["$dict"]}
        if "$float" in value:
            return float(value["$float"])
        if "$enum" in value:
            return self._class(value["$enum"])(self(value["value"]))
        if "$object" in value:
            cls = self._class(value["$object"])
            if not dataclasses.is_dataclass(cls):
                raise SavedFitError(f"The file's {value['$object']} is not a class a saved fit holds.")
            return cls(**{name: self(item) for name, item in value["fields"].items()})
        if "$model_spec" in value:
            return self._model_spec(value["$model_spec"])
        return {key: self(item) for key, item in value.items()}

    def _class(self, name: str) -> type:
        if name not in self.classes:
            raise SavedFitError(f"The file names a class a saved fit does not hold ({name}): it is not a saved fit.")
        return self.classes[name]

    def _array(self, name: str) -> np.ndarray:
        try:
            with self.archive.open(name) as entry:
                return np.load(io.BytesIO(entry.read()), allow_pickle=False)
        except (KeyError, ValueError, OSError) as error:
            raise SavedFitError(f"The saved fit's array {name} is missing or damaged ({error}).") from error

    def _model_spec(self, fields: dict[str, Any]) -> Any:
        from formulaic import ModelSpec

        return ModelSpec(
            formula=fields["formula"],
            materializer=fields["materializer"],
            ensure_full_rank=fields["ensure_full_rank"],
            na_action=self(fields["na_action"]),
            output=fields["output"],
            transform_state=self(fields["transform_state"]),
            encoder_state=self(fields["encoder_state"]),
        )


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


def read_archive(path: str | os.PathLike[str], classes: Mapping[str, type]) -> Archive:
    """Read a saved fit, making objects of ``classes`` (``"module.Class"`` → class) and of
    formulaic's state classes only.

    Raises
    ------
    SavedFitError
        For a file that is not a saved fit, is damaged, or was written in a newer format.
    """
    source = _checked_path(path)
    if not os.path.exists(source):
        raise ArgumentError(f"There is no file {source!r} to load.")
    try:
        with zipfile.ZipFile(source) as archive:
            try:
                manifest = json.loads(archive.read(MANIFEST))
            except KeyError:
                message = f"{source!r} is a zip archive but not a saved fit (it has no {MANIFEST})."
                raise SavedFitError(message) from None
            _check_manifest(manifest, source)
            content = _Decoder(archive, classes)(manifest["content"])
            data = None
            if DATA in archive.namelist():
                data = pd.read_parquet(io.BytesIO(archive.read(DATA)), engine="pyarrow")
    except zipfile.BadZipFile:
        raise SavedFitError(f"{source!r} is not a saved fit (not a zip archive); fit.save(path) writes them.") from None
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, KeyError) as error:
        raise SavedFitError(f"{source!r} is a damaged saved fit ({type(error).__name__}: {error}).") from None
    return Archive(manifest["kind"], content, data, manifest["lmmfast_version"])


def _check_manifest(manifest: object, source: str) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SavedFitError(f"{source!r} is not a saved fit (its manifest is not lmmfast's).")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise SavedFitError(
            f"{source!r} was written in version {version} of the saved-fit format, newer than this lmmfast reads "
            f"({FORMAT_VERSION}; it was written by lmmfast {manifest.get('lmmfast_version')}); upgrade lmmfast."
        )

"""How a fit's data were encoded, without the rows: what building X and Z again for new data
needs (predictions), and what a saved fit keeps of its design.

:class:`DesignEncoding` holds the parsed formula, formulaic's model specs (factor levels,
contrast codings, the state of stateful transforms such as ``scale(x)``), which columns were
kept, the grouping factors' levels, and the kind of every column of the fit's data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lmmfast.formula import ModelFormula


@dataclass(frozen=True)
class TermEncoding:
    """One random-effects term's encoding.

    Attributes
    ----------
    group : str
    columns : tuple of str
    levels : numpy.ndarray of str
        The grouping factor's levels, in the fit's order.
    factors : tuple of str
        The grouping columns.
    spec : formulaic.ModelSpec
        How the term's columns are built from the data.
    column_index : tuple of int
        Which of ``spec``'s columns this term holds.
    expr : str
        The expression ``spec`` was learnt from (empty in fits saved before it was kept).
    """

    group: str
    columns: tuple[str, ...]
    levels: np.ndarray
    factors: tuple[str, ...]
    spec: object
    column_index: tuple[int, ...]
    expr: str = ""

    def codes_for(self, frame: pd.DataFrame) -> np.ndarray:
        """Level index of each row of new data; −1 for levels the fit has not seen."""
        labels = [level_labels(frame[name].to_numpy()) for name in self.factors]
        combined = (
            labels[0] if len(labels) == 1 else np.asarray([":".join(parts) for parts in zip(*labels)], dtype=object)
        )
        index = {level: i for i, level in enumerate(self.levels)}
        return np.asarray([index.get(label, -1) for label in combined], dtype=np.int64)

    def values_for(self, frame: pd.DataFrame) -> np.ndarray:
        """This term's columns for new data, built as they were for the fit."""
        matrix = self.spec.get_model_matrix(frame, na_action="raise")  # type: ignore[attr-defined]
        return np.asarray(matrix, dtype=np.float64)[:, list(self.column_index)]


@dataclass(frozen=True)
class DesignEncoding:
    """A fit's whole design encoding.

    Attributes
    ----------
    formula : ModelFormula
        As parsed, contrast codings applied.
    fixed_spec : formulaic.ModelSpec
        How X was built.
    kept : tuple of int
        Which of ``fixed_spec``'s columns X holds (aliased ones dropped).
    terms : tuple of TermEncoding
        In the fit's (lme4's) order.
    column_kinds : dict
        Column of the fit's data → ``(kind, dtype)``: ``"numeric"``, ``"boolean"`` or
        ``"text or categorical"``, and the dtype's name (for messages).
    numeric_means : dict
        The mean of every numeric column of the fit's data (a reference grid's values).
    """

    formula: ModelFormula
    fixed_spec: object
    kept: tuple[int, ...]
    terms: tuple[TermEncoding, ...]
    column_kinds: Mapping[str, tuple[str, str]]
    numeric_means: Mapping[str, float]

    def X_for(self, frame: pd.DataFrame) -> np.ndarray:
        """The fixed-effects matrix for new data, with the fit's encoding and columns."""
        matrix = self.fixed_spec.get_model_matrix(frame, na_action="raise")  # type: ignore[attr-defined]
        return np.asarray(matrix, dtype=np.float64)[:, list(self.kept)]


def dtype_kind(dtype: object) -> str:
    """``"boolean"``, ``"numeric"`` or ``"text or categorical"``: what a column of this dtype
    holds to a formula.

    Examples
    --------
    >>> dtype_kind(np.dtype("int64")), dtype_kind(pd.BooleanDtype()), dtype_kind(pd.CategoricalDtype())
    ('numeric', 'boolean', 'text or categorical')
    """
    if isinstance(dtype, np.dtype):  # numpy's own: its kind says it, and pandas' tests cost 10 µs each
        return "boolean" if dtype.kind == "b" else "numeric" if dtype.kind in "iufc" else "text or categorical"
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_numeric_dtype(dtype):
        return "numeric"
    return "text or categorical"


def column_kind(column: pd.Series) -> str:
    """``"boolean"``, ``"numeric"`` or ``"text or categorical"``: what a column's values are
    to a formula."""
    return dtype_kind(column.dtype)


def column_kinds(frame: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """Every column's kind and dtype name.

    Examples
    --------
    >>> column_kinds(pd.DataFrame({"x": [1.0], "g": ["a"], "b": [True]}))["x"]
    ('numeric', 'float64')
    """
    return {str(name): (dtype_kind(dtype), str(dtype)) for name, dtype in frame.dtypes.items()}


def level_labels(uniques: object) -> np.ndarray:
    """Each level's text: integral numbers without a decimal point, as R prints them.

    Examples
    --------
    >>> level_labels(np.array([1.0, 2.5])).tolist()
    ['1', '2.5']
    """
    numbers = np.asarray(uniques)
    if numbers.dtype.kind in "iu":
        return numbers.astype(str).astype(object)
    if numbers.dtype.kind == "f" and np.all(np.abs(numbers) < 2**53) and np.all(numbers == np.round(numbers)):
        return numbers.astype(np.int64).astype(str).astype(object)
    values = np.asarray(uniques, dtype=object)
    labels = []
    for value in values:
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            labels.append(str(int(value)))
        else:
            labels.append(str(value))
    return np.asarray(labels, dtype=object)


def _categories(column: pd.Series) -> list[object]:
    """The levels formulaic finds in a column it encodes as categories: a categorical
    column's categories, else the sorted distinct values."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return list(column.cat.categories)
    return list(column.astype("category").cat.categories)


def _plain_column(factor: str, columns: Sequence[str]) -> str | None:
    """The data column a categorical factor encodes when it is the column itself or
    ``C(column, ...)`` (lmmfast's codings), else None."""
    if factor in columns:
        return factor
    for name in columns:
        if factor == f"C({name})" or factor.startswith(f"C({name}, "):
            return name
    return None


def spec_fits(spec: object, kinds: Mapping[str, tuple[str, str]], frame: pd.DataFrame) -> bool:
    """Whether formulaic's model ``spec``, learnt from data whose columns had the ``kinds``
    (:func:`column_kinds`), builds for ``frame`` the matrix a spec learnt from ``frame``
    would (so the formula need not be evaluated afresh).

    It does when the spec holds no state of stateful transforms (``scale(x)``'s mean and
    deviation, ``poly``'s coefficients: the new data's differ), every column it reads has
    its kind in ``frame``, and every categorical factor is a column, or ``C(column, ...)``,
    whose levels in ``frame`` are the spec's. Anything else is learnt again, which costs
    time, never an answer.

    Examples
    --------
    >>> from formulaic import model_matrix
    >>> frame = pd.DataFrame({"x": [0.0, 1.0, 2.0], "f": ["a", "b", "a"]})
    >>> spec, kinds = model_matrix("x + f", frame).model_spec, column_kinds(frame)
    >>> spec_fits(spec, kinds, frame.iloc[::-1]), spec_fits(spec, kinds, frame.iloc[[0, 2]])
    (True, False)
    >>> spec_fits(spec, kinds, frame.assign(x=["0", "1", "2"]))
    False
    >>> spec_fits(model_matrix("scale(x)", frame).model_spec, kinds, frame)
    False
    """
    if spec is None or spec.transform_state:  # type: ignore[attr-defined]
        return False
    columns = [str(name) for name in frame.columns]
    for name in spec.variables_by_source.get("data", ()):  # type: ignore[attr-defined]
        if name not in kinds or name not in frame.columns or dtype_kind(frame[name].dtype) != kinds[name][0]:
            return False
    for factor, (kind, state) in spec.encoder_state.items():  # type: ignore[attr-defined]
        if getattr(kind, "value", kind) != "categorical":
            continue
        column = _plain_column(str(factor), columns)
        if column is None or _categories(frame[column]) != list(state.get("categories", ())):
            return False
    return True


def every_spec_fits(encoding: DesignEncoding, frame: pd.DataFrame) -> bool:
    """Whether every formulaic spec of ``encoding`` (its fixed part's and its random terms')
    fits the model frame ``frame`` (:func:`spec_fits`): then its codings, which differ only
    with the predictors' kinds and levels, fit too."""
    kinds = encoding.column_kinds
    specs = {id(term.spec): term for term in encoding.terms}.values()
    return spec_fits(encoding.fixed_spec, kinds, frame) and all(
        bool(term.expr) and spec_fits(term.spec, kinds, frame) for term in specs
    )


def encode_design(formula: ModelFormula, fixed: object, terms: Sequence[object], frame: pd.DataFrame) -> DesignEncoding:
    """The encoding of a prepared model's design: its formula, its fixed design's spec and
    kept columns (:class:`lmmfast.design.FixedDesign`), its terms'
    (:attr:`lmmfast.design.RandomTerm.encoding`), and the kinds (and the numeric ones' means)
    of its data's columns."""
    kinds = column_kinds(frame)
    return DesignEncoding(
        formula=formula,
        fixed_spec=fixed.spec,  # type: ignore[attr-defined]
        kept=fixed.kept,  # type: ignore[attr-defined]
        terms=tuple(term.encoding for term in terms),  # type: ignore[attr-defined]
        column_kinds=kinds,
        numeric_means={
            name: float(np.mean(frame[name].to_numpy(dtype=np.float64)))
            for name, (kind, _) in kinds.items()
            if kind == "numeric"
        },
    )

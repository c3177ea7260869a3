"""JSON-safe values: the one conversion every JSON file and `--json` output goes through."""

from __future__ import annotations

import dataclasses
import datetime
import math

import numpy as np


def jsonable(obj):
    """Convert a nested structure to values `json.dumps` accepts, without losing information.

    numpy scalars and arrays become Python numbers and lists, non-finite floats become the
    strings ``"nan"``, ``"inf"`` and ``"-inf"`` (strict JSON has no literal for them), dates and
    times (from TOML specs) become ISO strings, dataclasses become dicts.

    Parameters
    ----------
    obj : object
        A dict, list, tuple, dataclass, numpy array of any shape, scalar, date or string.

    Returns
    -------
    object
        The same structure made of dict, list, str, int, float, bool and None.

    Examples
    --------
    >>> jsonable({"a": np.array([1.0, np.inf]), "b": np.int64(3)})
    {'a': [1.0, 'inf'], 'b': 3}
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (datetime.date, datetime.time)):
        return obj.isoformat()
    return obj

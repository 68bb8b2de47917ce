"""Time-series windows: splits by time without leakage, train-only scaling, CSV errors."""

import numpy as np
import pytest

from outeffhop.data import timeseries as ts


def _series(t=300, d=3):
    v = np.arange(t * d, dtype=np.float32).reshape(t, d)
    return ts.Series(v, tuple(f"v{i}" for i in range(d)), tuple(str(i) for i in range(t)))


@pytest.mark.parametrize("split", ts.SPLITS)
def test_targets_stay_inside_their_split(split):
    s = _series()
    in_len, out_len = 20, 5
    w, _ = ts.make_windows(s, split, in_len, out_len)
    lo, hi = ts.split_borders(len(s.values))[split]
    starts = w.starts
    assert (starts + in_len >= lo).all() and (starts + in_len + out_len <= hi).all()
    if split == "train":  # nothing after the train range is ever read
        assert (starts >= 0).all() and (starts + in_len + out_len <= hi).all()
    # x and y are the consecutive slices they claim to be (values are the time index * d).
    row = w(len(starts) - 1)
    np.testing.assert_array_equal(row["y"][0], w.values[starts[-1] + in_len])
    assert row["x"].shape == (in_len, 3) and row["y"].shape == (out_len, 3)


def test_every_target_step_of_val_is_covered_once_per_offset():
    s = _series()
    w, _ = ts.make_windows(s, "val", 10, 4)
    lo, hi = ts.split_borders(300)["val"]
    first_targets = w.starts + 10
    np.testing.assert_array_equal(first_targets, np.arange(lo, hi - 4 + 1))


def test_scaler_uses_train_only_and_round_trips():
    s = _series()
    w, scaler = ts.make_windows(s, "test", 10, 4)
    lo, hi = ts.split_borders(300)["train"]
    np.testing.assert_allclose(scaler.mean, s.values[lo:hi].mean(0), rtol=1e-6)
    np.testing.assert_allclose(w.values[lo:hi].mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(scaler.inverse(scaler.transform(s.values)), s.values, rtol=1e-5)


def test_padding_rows_have_zero_weight():
    w, _ = ts.make_windows(_series(), "val", 5, 2)
    pad = w(w.num_examples)
    assert pad["weight"] == 0 and not pad["x"].any()


def test_default_series_ships_offline():
    s = ts.load_epf_fr_be()
    assert s.values.shape == (16080, 6) and np.isfinite(s.values).all()


def test_csv_loader_and_its_errors(tmp_path):
    good = tmp_path / "ett.csv"
    good.write_text("date,HUFL,OT\n2016-07-01 00:00:00,5.8,30.5\n2016-07-01 01:00:00,5.7,27.8\n")
    s = ts.load_csv(str(good))
    assert s.columns == ("HUFL", "OT") and s.values.shape == (2, 2)
    nodate = tmp_path / "nodate.csv"
    nodate.write_text("time,a\n1,2\n")
    with pytest.raises(ValueError, match="no date column 'date'"):
        ts.load_csv(str(nodate))
    bad = tmp_path / "bad.csv"
    bad.write_text("date,a\nx,1\ny,oops\n")
    with pytest.raises(ValueError, match="line 3 has a non-numeric"):
        ts.load_csv(str(bad))
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        ts.load_csv(str(tmp_path / "missing.csv"))
    with pytest.raises(ValueError, match="do not fit the val split"):
        ts.make_windows(_series(50), "val", 30, 10)
    with pytest.raises(ValueError, match="split must be one of"):
        ts.make_windows(_series(), "dev", 3, 1)


def test_registry_timeseries_splits(tmp_path):
    from outeffhop.data import registry

    path = tmp_path / "ett.csv"
    rows = [f"2016-01-01 {i},{i},{2 * i}" for i in range(200)]
    path.write_text("date,a,b\n" + "\n".join(rows) + "\n")
    cfg = registry.get_data_config("timeseries")
    cfg.update(path=str(path), seq_len=12, pred_len=4, batch_size=8)
    sizes = {}
    for split in ("train", "val", "test"):
        ds, info = registry.make_dataset(cfg, split, process_index=0, process_count=1)
        batch = ds[0]
        assert batch["x"].shape == (8, 12, 2) and batch["y"].shape == (8, 4, 2)
        assert (info.num_series, info.pred_len, info.objective) == (2, 4, "forecast")
        sizes[split] = info.num_examples
    assert sizes["test"] == 40 - 4 + 1  # every test target step starts one window
    eval_ds, _ = registry.make_dataset(cfg, "eval", process_index=0, process_count=1)
    val_ds, _ = registry.make_dataset(cfg, "val", process_index=0, process_count=1)
    np.testing.assert_array_equal(eval_ds[0]["x"], val_ds[0]["x"])
    with pytest.raises(ValueError, match="split 'test' exists for time series only"):
        registry.make_dataset(registry.get_data_config("digits"), "test")

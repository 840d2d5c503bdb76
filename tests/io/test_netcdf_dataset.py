"""Analysis datasets to NetCDF: attributes NetCDF cannot hold (the (1, 3, 3) crystal axes of an
order-parameter result) survive as JSON and come back decoded."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import aet
from aet.io.netcdf import read_dataset, write_dataset
from aet.testing.analysis import particle


def test_order_parameters_with_3x3_axes_round_trip(tmp_path):
    m = particle("L10", radius_A=7, seed=1)
    order = m.analysis.order_parameters("L10")
    assert np.asarray(order.attrs["crystal_axes"]).shape == (1, 3, 3)
    p = write_dataset(order, tmp_path / "order.nc")
    back = read_dataset(p)
    np.testing.assert_array_equal(back["order_L10"].values, order["order_L10"].values)
    np.testing.assert_allclose(back.attrs["crystal_axes"], order.attrs["crystal_axes"])
    assert back.attrs["species_A"] == "Fe" and "aet_json_attrs" not in back.attrs
    with pytest.raises(FileExistsError):
        write_dataset(order, p, overwrite=False)


def test_odd_attrs_and_an_aet_object_with_them(tmp_path):
    ds = xr.Dataset({"v": ("x", np.arange(3.0), {"flag": True, "none": None})},
                    attrs={"nested": {"a": [1, 2]}, "vec": [1.0, 2.0], "s": "x"})
    back = read_dataset(write_dataset(ds, tmp_path / "d.nc"))
    assert back.attrs["nested"] == {"a": [1, 2]} and back.attrs["s"] == "x"
    np.testing.assert_array_equal(back.attrs["vec"], [1.0, 2.0])
    assert back["v"].attrs == {"flag": True, "none": None}
    # a model carrying such attrs writes to .nc and opens again
    m = particle("L10", radius_A=6, seed=2)
    m = aet.AtomicModel(m.analysis.order_parameters("L10"))
    m2 = aet.open(m.write(tmp_path / "m.nc"))
    np.testing.assert_allclose(m2.attrs["crystal_axes"], m.attrs["crystal_axes"])

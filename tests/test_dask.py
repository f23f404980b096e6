"""Many fits on a Dask cluster (client=): the same numbers, bit for bit, as in one process."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lmmfast
from lmmfast.errors import ArgumentError

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def sleepstudy_fit():
    return lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))


def test_bootstrap_on_the_cluster_is_the_serial_bootstrap(client, sleepstudy_fit) -> None:
    serial = sleepstudy_fit.bootstrap(12, seed=3)
    spread = sleepstudy_fit.bootstrap(12, seed=3, client=client)
    pd.testing.assert_frame_equal(serial, spread, check_exact=True)


def test_generalized_bootstrap_on_the_cluster(client) -> None:
    fit = lmmfast.glmm(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)", lmmfast.datasets.load("cbpp"), family="binomial"
    )
    pd.testing.assert_frame_equal(fit.bootstrap(4, seed=1), fit.bootstrap(4, seed=1, client=client), check_exact=True)


def test_lmm_many_on_the_cluster(client) -> None:
    data = lmmfast.datasets.load("sleepstudy")
    noise = np.random.default_rng(2).normal(0.0, 25.0, (len(data), 6))
    data = pd.concat([data, pd.DataFrame(data.Reaction.to_numpy()[:, None] + noise, columns=list("abcdef"))], axis=1)
    serial = lmmfast.lmm_many("~ Days + (Days | Subject)", data, list("abcdef"))
    spread = lmmfast.lmm_many("~ Days + (Days | Subject)", data, list("abcdef"), client=client)
    pd.testing.assert_frame_equal(serial, spread, check_exact=True)


def test_power_on_the_cluster(client, sleepstudy_fit) -> None:
    serial = lmmfast.power(sleepstudy_fit, "Days", nsim=8, effect=2.0, seed=4)
    spread = lmmfast.power(sleepstudy_fit, "Days", nsim=8, effect=2.0, seed=4, client=client)
    np.testing.assert_array_equal(serial.p_values, spread.p_values)


def test_a_client_with_processes_is_refused(client, sleepstudy_fit) -> None:
    with pytest.raises(ArgumentError, match="Give client= or processes=, not both"):
        sleepstudy_fit.bootstrap(2, processes=2, client=client)


def test_something_else_as_a_client_is_refused(sleepstudy_fit) -> None:
    with pytest.raises(ArgumentError, match=r"client must be a dask\.distributed Client .* got str"):
        sleepstudy_fit.bootstrap(2, client="tcp://127.0.0.1:8786")


def test_profile_intervals_on_the_cluster(client, sleepstudy_fit) -> None:
    serial = sleepstudy_fit.confint("profile")
    spread = sleepstudy_fit.confint("profile", client=client)
    pd.testing.assert_frame_equal(serial, spread, rtol=1e-9)
    two = sleepstudy_fit.confint("profile", processes=2)
    pd.testing.assert_frame_equal(serial, two, rtol=1e-9)


def test_data_read_on_the_cluster_give_the_in_memory_fit(client, tmp_path) -> None:
    dd = pytest.importorskip("dask.dataframe")
    data = lmmfast.datasets.load("sleepstudy")
    in_memory = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", data)
    folder = tmp_path / "dataset"
    folder.mkdir()
    for part, rows in enumerate(np.array_split(np.arange(len(data)), 3)):
        data.iloc[rows].to_parquet(folder / f"part-{part}.parquet")
    for source in (dd.from_pandas(data, npartitions=4), folder):
        fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", source, client=client)
        assert fit.objective == pytest.approx(in_memory.objective, rel=1e-10)
        np.testing.assert_allclose(fit.beta, in_memory.beta, rtol=1e-6)
        # θ to 1e-6 of its scale: the small entry (0.015) is the flat direction of the optimum
        np.testing.assert_allclose(fit.theta, in_memory.theta, rtol=0, atol=1e-6 * np.abs(in_memory.theta).max())

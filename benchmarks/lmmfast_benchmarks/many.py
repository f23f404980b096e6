"""Many responses on one design (``lmm_many``): sleepstudy's design, 1,000 responses."""

from __future__ import annotations

import numpy as np
import pandas as pd

import lmmfast

RESPONSES = 1000


class ManyResponses:
    timeout = 600
    number = 1
    repeat = 1
    params = [1, 2]
    param_names = ["processes"]

    def setup(self, processes: int) -> None:
        data = lmmfast.datasets.load("sleepstudy")
        noise = np.random.default_rng(1).normal(0.0, 25.0, (len(data), RESPONSES))
        columns = [f"y{i}" for i in range(RESPONSES)]
        responses = pd.DataFrame(data.Reaction.to_numpy()[:, None] + noise, columns=columns)
        self.data = pd.concat([data, responses], axis=1)
        self.names = columns
        lmmfast.lmm_many("~ Days + (Days | Subject)", self.data, self.names[:3])  # numba's kernels loaded

    def time_lmm_many(self, processes: int) -> None:
        lmmfast.lmm_many("~ Days + (Days | Subject)", self.data, self.names, processes=processes)

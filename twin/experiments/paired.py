"""The day a comparison is made against: the same hospital, the same people and the same
random streams (common random numbers), so that every difference is paired.

Two comparisons exist: the fused-card day against the all-traditional day (the roll-out's
effect), and a day with card-network faults against the same day without them (an
outage's effect). Every experiment builds its counterfactual here, never by hand.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from twin.model.day import HospitalDay
from twin.network.scripted import Network
from twin.scenario.schema import Scenario

Against = Literal["traditional", "no fault"]


def counterfactual_scenario(sc: Scenario, against: Against) -> Scenario:
    """The scenario of the day ``sc`` is compared with."""
    if against == "traditional":
        return sc.with_adoption(0.0)
    return sc.model_copy(update={"faults": []})


def counterfactual_day(sc: Scenario, replication: int, hospital: int = 0, *,
                       against: Against = "traditional",
                       absent: np.ndarray | None = None,
                       sample_every: float | None = 5.0) -> HospitalDay:
    """Run the counterfactual of ``sc``'s day (no patient rows kept): all-traditional, or
    without faults on a card network that always answers. ``absent``: the scenario day's
    patients who did not come (those who booked and never came would not have come to
    the traditional hospital either): the counterfactual leaves out the same people.
    ``sample_every``: as ``HospitalDay``'s."""
    network = Network() if against == "no fault" else None
    return HospitalDay(counterfactual_scenario(sc, against), replication, hospital,
                       keep_steps=False, network=network, absent=absent,
                       sample_every=sample_every).run()

"""How the model sees the card network: each scan or phone payment is a call that succeeds
or fails (always up, scripted faults, or the real stack in ``twin.experiments.cosim``)."""

"""Experiments over the model: replications, paired days, sweeps, outages, the province,
co-simulation and the demand curves the load tests replay."""

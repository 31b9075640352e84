"""Model: one hospital day in SimPy (patients as processes, stations as resources, one
seeded stream per sampled activity)."""

"""Scenario: what a planner states (hospital, flows, adoption, faults; the province), loaded
from YAML and validated by a pydantic schema."""

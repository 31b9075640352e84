"""Results: tidy frames, the KPIs planners read under stable names, and statistics."""

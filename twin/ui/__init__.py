"""The planners' page (``ehc twin ui``)."""

"""Report: plots and the analyst notebooks executed into HTML."""

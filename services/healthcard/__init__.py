"""services/healthcard."""

"""The aggregated payment gateway for the self-paid part (a simulated bank side)."""

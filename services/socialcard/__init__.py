"""The e-SSC / medical-insurance card system."""

"""The unified channel entry (浙里办-like): one login, one card, one code."""

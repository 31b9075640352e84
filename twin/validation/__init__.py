"""Validation of the engine against queueing theory (Erlang C, Jackson tandems)."""

"""The data resources layer (the paper's section 3.3): the network's own records gathered
from every system's export routes (fusion layer, :mod:`.collect`), kept pseudonymised in
an analytics store of Parquet partitions read through DuckDB (:mod:`.store`),
quality-controlled by declared rules (governance layer, :mod:`.quality`) and analysed
(:mod:`.analysis`). It reads the systems only through HTTP with its own read-only token,
never their tables."""

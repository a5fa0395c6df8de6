"""commap's gRPC server: a thin adapter over the library (``python -m server``).

Modules: ``config`` (flags / ``COMMAP_*``), ``app`` (assembly, health, reflection, shutdown),
``servicer`` (the RPCs), ``convert`` (messages <-> library objects), ``interceptors`` (error
tree -> status codes, access log), ``pool`` (bounded solves off the event loop), ``maps``
(served maps and their fleet measurements), ``ingest`` (checking and storing uploads),
``processes`` (the upload and fleet fusion processes, apart from the solves' GIL), ``client``
(Python client), ``protogen`` (stubs).
"""

"""The drivers and the virtual clock (docs/architecture.md §2–§3).

``simulation`` (synchronous rounds), ``buffered`` (FedBuff), ``gossip`` (synchronous
decentralized rounds) and ``event_driver`` (Poisson-clocked events, wall-clock replay) share
``loop`` and the clock (``events``, ``system``, ``sampling``); ``modes`` maps each algorithm
mode to its driver and to a backend per backend kind.
"""

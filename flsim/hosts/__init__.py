"""Code that runs on a host, in process or inside a Ray actor.

* :mod:`~flsim.hosts.client_host` — many virtual clients: their data, state and local work;
* :mod:`~flsim.hosts.node_host` — decentralized nodes: local work and mixing;
* :mod:`~flsim.hosts.server` — the server core of a round-based run;
* :mod:`~flsim.hosts.state_store` — persistent per-client state, spilled to disk past a budget;
* :mod:`~flsim.hosts.channels` — compression as a channel around a round-based algorithm;
* :mod:`~flsim.hosts.event_host` — a whole event-driven simulation (one heap);
* :mod:`~flsim.hosts.run_loop` — the one run loop every driver shares: rows, checkpoints,
  progress and recovery;
* :mod:`~flsim.hosts.counters`, :mod:`~flsim.hosts.sinks` — the accounting and the typed
  writer and progress contracts that drivers, hosts and backends share.

Drivers (:mod:`flsim.engine`) and backends (:mod:`flsim.backends`) both import this package;
it imports neither. See docs/architecture.md.
"""

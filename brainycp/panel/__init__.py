"""The client of a BrainyCP panel's API, in one sub-package.

- :mod:`~brainycp.panel.client`: :class:`PanelClient`, one method per vendor operation.
- :mod:`~brainycp.panel.answers`: what a panel's JSON answer means (codes, counts, results).
- :mod:`~brainycp.panel.errors`: :class:`BrainyCPError` and one subclass per failure reason.
- :mod:`~brainycp.panel.transport`: :class:`PanelTransport`, HTTP/1.1 with a connection pool.
- :mod:`~brainycp.panel.connection`: one socket's bytes, as an asyncio protocol.
- :mod:`~brainycp.panel.framing`: the response head and the body's framing.
- :mod:`~brainycp.panel.decoding`: gzip and deflate bodies decoded under a size cap.
- :mod:`~brainycp.panel.tls`: the shared SSL contexts and certificate pinning.
- :mod:`~brainycp.panel.sockets`: host names, addresses and socket failures in words.
"""

"""`mfvan-web`: the WebSocket/JSON bridge and live dashboard (docs/integrating.md).

It sits at the engine layer and speaks only the wire (engine.wire.client): it is one more
subscriber of an engine's PUB, so it can run on the engine host, the interview room's PC or
anywhere the PUB reaches, and a browser never touches ZeroMQ.
"""

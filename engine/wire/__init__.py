"""The wire: what crosses a socket (protocol), how a socket is secured (security) and the
subscriber SDK (client).

Why a layer of its own: subscribers in other programs, the streamer and the engine all speak
it, so it imports nothing else of the project (an import contract in CI keeps it so): a
subscriber needs pyzmq, msgspec and numpy, never the engine runtime.
"""

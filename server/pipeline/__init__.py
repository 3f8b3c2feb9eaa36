"""The live path: ingest streams, channels, sessions, speakers, the hub that stores and publishes."""

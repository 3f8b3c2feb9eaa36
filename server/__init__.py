"""voxlane's ASGI application: routes, settings, storage, pub/sub and the CLI."""

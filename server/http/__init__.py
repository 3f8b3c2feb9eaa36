"""HTTP plumbing shared by the routes: auth, errors, OpenAPI, uploads, limits, outbound calls."""

"""``voxlane token``: API keys (create, list, revoke) and, for testing, HS256 JWTs.

An API key is printed once, on stdout alone (``KEY=$(voxlane token create ...)`` works); the store keeps its
SHA-256 hash. Revocation takes effect within ~10 s on running servers (they cache a key's check briefly).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from server.http.auth import SCOPES, generate_api_key, parse_scopes
from server.settings import Settings, SettingsError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="token_command", required=True)

    def store_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", default=None, help="the server's data dir; env VOXLANE_DATA_DIR")
        p.add_argument("--database-url", default=None, help="the server's database; env VOXLANE_DATABASE_URL")

    create = sub.add_parser("create", help="create an API key and print it (once)")
    create.add_argument("--scope", action="append", required=True,
                        help=f"a scope to grant (repeat, or comma-separate): {', '.join(SCOPES)}")
    create.add_argument("--user", default=None, help="the user the key acts as (owns what it creates);"
                                                     " default: the key itself")
    create.add_argument("--name", default=None, help="a label, e.g. what the key is for")
    store_args(create)
    listing = sub.add_parser("list", help="list API keys (never the keys themselves)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    store_args(listing)
    revoke = sub.add_parser("revoke", help="revoke an API key by its id")
    revoke.add_argument("key_id")
    store_args(revoke)
    mint = sub.add_parser("jwt", help="print an HS256 JWT signed with VOXLANE_JWT_SECRET (for testing)")
    mint.add_argument("--user", required=True, help="the 'sub' claim")
    mint.add_argument("--scope", action="append", default=[], help="scopes (default: read, write, export)")
    mint.add_argument("--ttl", type=int, default=3600, help="seconds until it expires (at most"
                                                             " VOXLANE_JWT_MAX_LIFETIME)")


def run(args: argparse.Namespace) -> int:
    try:
        if args.token_command == "jwt":
            return _jwt(args)
        settings = Settings.from_sources({"data_dir": args.data_dir, "database_url": args.database_url})
        return asyncio.run(_with_store(settings, args))
    except (SettingsError, ValueError) as exc:
        print(f"voxlane token: {exc}", file=sys.stderr)
        return 2


async def _with_store(settings: Settings, args: argparse.Namespace) -> int:
    from server.storage import open_store

    settings.data_path.mkdir(parents=True, exist_ok=True)
    store = open_store(settings.database_url, settings.data_path)
    await store.open()
    try:
        if args.token_command == "create":
            scopes = parse_scopes(args.scope)
            key_id, token, digest = generate_api_key()
            await store.create_api_key(key_id=key_id, key_hash=digest, user=args.user, scopes=scopes, name=args.name)
            print(token)
            print(f"created API key {key_id} for {args.user or 'apikey:' + key_id} with {' '.join(scopes)};"
                  " it is shown only now: store it safely", file=sys.stderr)
            return 0
        if args.token_command == "list":
            keys = await store.list_api_keys()
            if args.json:
                print(json.dumps(keys, indent=2))
            else:
                for k in keys:
                    state = f"revoked {k['revoked_at']}" if k.get("revoked_at") else "active"
                    print(f"{k['id']}  {k.get('user') or '-':<20} {' '.join(k['scopes']):<50} {state}"
                          f"  {k.get('name') or ''}")
            return 0
        if await store.revoke_api_key(args.key_id):
            print(f"revoked API key {args.key_id}", file=sys.stderr)
            return 0
        print(f"voxlane token: no active API key {args.key_id!r}", file=sys.stderr)
        return 1
    finally:
        await store.close()


def _jwt(args: argparse.Namespace) -> int:
    import jwt

    settings = Settings.from_sources({})
    if not settings.jwt_secret:
        print("voxlane token: VOXLANE_JWT_SECRET is not set", file=sys.stderr)
        return 2
    if not 0 < args.ttl <= settings.jwt_max_lifetime:  # the server refuses a token that never or too late expires
        print(f"voxlane token: --ttl must be between 1 and {settings.jwt_max_lifetime} seconds"
              " (VOXLANE_JWT_MAX_LIFETIME)", file=sys.stderr)
        return 2
    now = int(time.time())
    claims: dict[str, Any] = {"sub": args.user, "iat": now, "exp": now + args.ttl}
    if args.scope:
        claims["scope"] = " ".join(parse_scopes(args.scope))
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    print(jwt.encode(claims, settings.jwt_secret, algorithm="HS256"))
    return 0

#!/usr/bin/env python3
"""Convert Nango connections (with credentials) into `latchkey connection import` lines.

Input: a JSON array of Nango connection objects, or one object per line, as Nango's
`GET /connection/{connectionId}?provider_config_key=…` returns them (the credentials
included). Output: one `POST /v1/connections` body per line, on standard output.

    python3 scripts/nango-to-latchkey.py nango.json > connections.jsonl
    python3 scripts/nango-to-latchkey.py --map github-app=github:github-main nango.json

`--map NANGO_KEY=CONNECTOR[:INTEGRATION]` says which Latchkey connector (and integration) a
Nango `provider_config_key` becomes; without one, the connector is Nango's `provider` and the
integration is the `provider_config_key` itself. A connection this script cannot convert is
reported on standard error by its index and id (never a credential) and left out; the exit
code is then 1. See docs/migration.md for the field mapping.
"""

import argparse
import datetime
import json
import sys


def rfc3339(value):
    """Nango's `expires_at` (an ISO date string, or epoch seconds/milliseconds) as RFC 3339."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        seconds = value / 1000 if value > 10**11 else value
        at = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    else:
        text = str(value).strip().replace("Z", "+00:00")
        at = datetime.datetime.fromisoformat(text)
        if at.tzinfo is None:
            at = at.replace(tzinfo=datetime.timezone.utc)
    return at.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def scopes_of(raw):
    """The granted scopes in a raw token response (`scope`, space- or comma-separated)."""
    scope = (raw or {}).get("scope")
    if isinstance(scope, list):
        return [str(s) for s in scope if s]
    if not isinstance(scope, str):
        return []
    return [s for s in scope.replace(",", " ").split() if s]


def convert(connection, mapping):
    """One Latchkey body for one Nango connection; raises ValueError with a reason."""
    key = connection.get("provider_config_key")
    if not key:
        raise ValueError("no provider_config_key")
    connector, integration = mapping.get(key, (connection.get("provider") or key, key))
    credentials = connection.get("credentials") or {}
    kind = credentials.get("type")
    body = {"id": connection.get("connection_id"), "connector": connector}
    if kind == "OAUTH2":
        if not credentials.get("access_token"):
            raise ValueError("OAUTH2 credentials without access_token")
        body["auth"] = "oauth2"
        body["integration"] = integration
        body["credentials"] = {"access_token": credentials["access_token"]}
        if credentials.get("refresh_token"):
            body["credentials"]["refresh_token"] = credentials["refresh_token"]
        expires_at = rfc3339(credentials.get("expires_at"))
        if expires_at:
            body["expires_at"] = expires_at
        scopes = scopes_of(credentials.get("raw"))
        if scopes:
            body["scopes"] = scopes
    elif kind == "OAUTH2_CC":
        body["auth"] = "oauth2"
        body["integration"] = integration
        body["credentials"] = {"access_token": credentials.get("token", "")}
        expires_at = rfc3339(credentials.get("expires_at"))
        if expires_at:
            body["expires_at"] = expires_at
    elif kind == "API_KEY":
        body["auth"] = "api_key"
        body["credentials"] = {"api_key": credentials.get("apiKey", "")}
    elif kind == "BASIC":
        body["auth"] = "basic"
        body["credentials"] = {
            "username": credentials.get("username", ""),
            "password": credentials.get("password", ""),
        }
    elif kind == "OAUTH1":
        body["auth"] = "oauth1"
        body["integration"] = integration
        body["credentials"] = {
            "token": credentials.get("oauth_token", ""),
            "token_secret": credentials.get("oauth_token_secret", ""),
        }
    else:
        raise ValueError(f"credentials of type {kind!r} are not converted")
    config = connection.get("connection_config") or {}
    config = {
        k: v if isinstance(v, str) else json.dumps(v)
        for k, v in config.items()
        if v is not None
    }
    if config:
        body["config"] = config
    end_user = connection.get("end_user") or {}
    if end_user.get("id"):
        body["end_user"] = {"id": str(end_user["id"])}
        for field in ("email", "display_name"):
            if end_user.get(field):
                body["end_user"][field] = str(end_user[field])
    metadata = connection.get("metadata")
    if isinstance(metadata, dict) and metadata:
        body["metadata"] = metadata
    return {k: v for k, v in body.items() if v is not None}


def read_connections(text):
    text = text.strip()
    if text.startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file", help="Nango connections (JSON array or JSON Lines); - for stdin")
    parser.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="NANGO_KEY=CONNECTOR[:INTEGRATION]",
        help="the Latchkey connector (and integration) of a provider_config_key",
    )
    args = parser.parse_args()
    mapping = {}
    for item in args.map:
        key, _, target = item.partition("=")
        connector, _, integration = target.partition(":")
        if not key or not connector:
            parser.error(f"--map takes NANGO_KEY=CONNECTOR[:INTEGRATION], not {item!r}")
        mapping[key] = (connector, integration or key)
    source = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")
    with source:
        connections = read_connections(source.read())
    failed = 0
    for index, connection in enumerate(connections, start=1):
        try:
            print(json.dumps(convert(connection, mapping), separators=(",", ":")))
        except (ValueError, TypeError, AttributeError) as e:
            failed += 1
            ident = connection.get("connection_id") if isinstance(connection, dict) else None
            print(f"connection {index} ({ident}): {e}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

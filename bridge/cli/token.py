"""``greenlight token``: make and list the bridge's bearer tokens.

    greenlight token new --project spaceship --tokens-file tokens.toml   # prints the token once
    greenlight token list --tokens-file tokens.toml                      # token ids and projects

The tokens file keeps only SHA-256 digests (see bridge/server/auth.py and
docs/security.md); the token itself is shown once and never stored.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import EXIT_OK

TOKEN_BYTES = 32   # secrets.token_urlsafe(32): 43 characters, 256 bits


def add_parsers(sub) -> None:
    sp = sub.add_parser("token", help="make and list bridge tokens (stored hashed)",
                        description="Tokens for `greenlight serve --tokens-file FILE`; the file keeps only "
                                    "their SHA-256 digests.")
    tsub = sp.add_subparsers(dest="token_command", required=True)
    new = tsub.add_parser("new", help="make a token for a project; prints it once")
    new.add_argument("--project", required=True, help="the project the token may see ('*' = every project)")
    new.add_argument("--tokens-file", required=True, metavar="FILE", help="created private (0600) if absent")
    new.set_defaults(func=cmd_new)
    ls = tsub.add_parser("list", help="list token ids and their projects")
    ls.add_argument("--tokens-file", required=True, metavar="FILE")
    ls.set_defaults(func=cmd_list)


def cmd_new(args) -> int:
    import secrets

    from ..server.auth import append_token, hash_token, token_id

    token = secrets.token_urlsafe(TOKEN_BYTES)
    digest = hash_token(token)
    append_token(Path(args.tokens_file), digest, args.project)
    print(token)
    print(f"token {token_id(digest)} for project {args.project!r} added to {args.tokens_file}; it is shown "
          "only now (the file keeps its digest): give it to the client (GREENLIGHT_TOKEN or --token), "
          "and restart the bridge to use it", file=sys.stderr)
    return EXIT_OK


def cmd_list(args) -> int:
    from ..server.auth import load_tokens_file, token_id

    tokens = load_tokens_file(Path(args.tokens_file))
    if not tokens:
        print(f"no tokens in {args.tokens_file}", file=sys.stderr)
        return EXIT_OK
    print(f"{'token id':<14}project")
    for digest, project in sorted(tokens.items(), key=lambda kv: (kv[1], kv[0])):
        print(f"{token_id(digest):<14}{project}")
    return EXIT_OK

"""``icmbridge serve | push``: the server that stores, detects and shows, and the edge uploader."""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
from pathlib import Path

from icmbridge.commands.options import HelpFormatter, add_task_options, set_threads
from icmbridge.errors import InputError

TOKEN_FILE = "token"


def _size(value: str) -> int:
    """``64M``, ``512k``, ``1G`` or a number of bytes."""
    text = value.strip().upper().removesuffix("B")
    scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
    number = text[:-1] if scale > 1 else text
    try:
        size = int(float(number) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 64M, got {value!r}") from None
    if size < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {value!r}")
    return size


def register(sub: argparse._SubParsersAction) -> None:
    from icmbridge.server.app import DEFAULT_MAX_BODY  # no FastAPI or torch at import

    p = sub.add_parser(
        "serve",
        help="run the server: store pushed bitstreams, detect on the machine decoder, show people "
        "the human decoder",
        description="Serve an HTTP API and a web page over DATA: POST /v1/images takes a .icmb "
        "file (or an image, encoded here), runs the task network on the machine decoder's output "
        "and stores both; GET /v1/images[/ID[.icmb|/view?decoder=human|machine]] reads them "
        "back; GET / is the gallery. Every endpoint but /healthz and / needs the bearer token. "
        "Without --token-file a token is made once and kept in DATA/token.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--data", required=True, help="folder for the database and the token")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free one, printed)")
    p.add_argument("--token-file", help="file holding the bearer token (default: DATA/token)")
    p.add_argument("--base", default="base", help="base codec: encoder, entropy models and the "
                   "machine decoder (shipped name or model folder)")  # fmt: skip
    p.add_argument("--human", default="human", help="human decoder finetuned from --base")
    p.add_argument(
        "--db",
        help="database URL: postgresql://USER@HOST:PORT/DB (default: SQLite in DATA)",
    )
    p.add_argument(
        "--max-body",
        type=_size,
        default=DEFAULT_MAX_BODY,
        metavar="SIZE",
        help="largest upload (e.g. 64M); larger ones get 413",
    )
    p.add_argument("--workers", type=int, default=1, help="threads decoding and detecting")
    p.add_argument(
        "--queue", type=int, default=32, help="requests that may wait for them; more get 503"
    )
    add_task_options(p, default=None)
    p.set_defaults(func=run_serve)
    for action in p._actions:
        if action.dest == "task":
            action.help += " (default: the task --base was trained for, else face)"

    p = sub.add_parser(
        "push",
        help="encode images here and upload the bitstreams to a server",
        description="Encode each image with --model (the server's base) and upload the .icmb "
        "bytes to URL; .icmb files are uploaded as they are. Folders are searched recursively. "
        "Failed attempts are retried with backoff; the server stores a bitstream once, so "
        "retries and re-runs never duplicate anything (201: stored, 200: already there).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="FILE|DIR", help="images, .icmb files, folders")
    p.add_argument("--to", required=True, metavar="URL", help="server, e.g. http://127.0.0.1:8000")
    p.add_argument("--token-file", required=True, help="file holding the server's token")
    p.add_argument("--model", default="base", help="codec to encode with (the server's --base)")
    p.add_argument("--retries", type=int, default=6, help="retries per file (backoff 0.5 s … 30 s)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.set_defaults(func=run_push)


def resolve_token(token_file: str | None, data_dir: Path) -> tuple[str, Path, bool]:
    """(token, where it is, whether it was made now). A new token file is created mode 600."""
    from icmbridge.server.client import read_token

    if token_file is not None:
        return read_token(token_file), Path(token_file), False
    path = data_dir / TOKEN_FILE
    if path.exists():
        return read_token(path), path, False
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token, path, True


def _bind(host: str, port: int) -> socket.socket:
    if not 0 <= port <= 65535:
        raise InputError(f"--port must be 0..65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InputError(f"--host {host!r}: {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from icmbridge.server.app import ServerConfig, create_app
    from icmbridge.tasks import parse_task_options

    data_dir = Path(args.data)
    if not data_dir.is_dir():
        if not data_dir.parent.is_dir():
            raise InputError(f"--data {args.data!r}: its parent folder does not exist")
        data_dir.mkdir()
    for name, value in (("--workers", args.workers), ("--queue", args.queue)):
        if value < 1:
            raise InputError(f"{name} must be at least 1, got {value}")
    token, token_path, made = resolve_token(args.token_file, data_dir)
    sock = _bind(args.host, args.port)
    config = ServerConfig(
        data_dir=data_dir,
        token=token,
        base=args.base,
        human=args.human,
        task=args.task,
        task_weights=args.task_weights,
        task_options=parse_task_options(args.task_options),
        db=args.db,
        max_body=args.max_body,
        workers=args.workers,
        queue=args.queue,
    )
    app = create_app(config)
    engine = app.state.engine
    host, port = sock.getsockname()[:2]
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    print(
        f"icmbridge serve: {url}/ (base {config.base} {engine.fingerprint}, human "
        f"{config.human}, task {engine.task_name}; data in {data_dir}"
        f"{', ' + args.db.split('@')[-1] if args.db else ''})"
    )
    print(f"token: {token_path}{' (new, mode 600)' if made else ''}")
    print(f"push:  icmbridge push FOLDER --to {url} --token-file {token_path}", flush=True)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    )
    server.run(sockets=[sock])
    return 0


def run_push(args: argparse.Namespace) -> int:
    from icmbridge.server.client import push

    set_threads(args.threads)
    if args.retries < 0:
        raise InputError(f"--retries must be 0 or more, got {args.retries}")
    return push(args.paths, args.to, args.token_file, args.model, args.retries, sys.stdout)

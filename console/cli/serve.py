"""`coordinator serve`, `tls make`, `token`, `dashboard` and `demo`: running the platform's services."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from edgeatlas.console.cli.common import admin_client, admin_options, say
from edgeatlas.protos import errors
from edgeatlas.protos.wire import DEFAULT_COORDINATOR


def cmd_coordinator_serve(args) -> int:
    import asyncio

    from edgeatlas.coordinator.server import ServerTls, bootstrap_tokens, serve
    from edgeatlas.coordinator.store import Store

    if args.k_anonymity < 1:  # options first: a refused command makes no database
        raise errors.InvalidInput(f"--k-anonymity must be at least 1, got {args.k_anonymity}")
    if ((args.tls_cert is None) != (args.tls_key is None) or (args.tls_client_ca and not args.tls_cert)
            or (args.tls_peer_ca and not args.tls_cert)):
        raise errors.InvalidInput("TLS needs --tls-cert and --tls-key (and --tls-client-ca for mutual TLS, "
                                  "--tls-peer-ca for replicas)")
    if args.report_rate <= 0:
        raise errors.InvalidInput(f"--report-rate must be positive, got {args.report_rate}")
    if args.enroll_rate <= 0:
        raise errors.InvalidInput(f"--enroll-rate must be positive, got {args.enroll_rate}")
    if args.superlink:
        from edgeatlas.protos.wire import check_address

        check_address(args.superlink)
    if not 1 <= args.secure_stage_timeout <= 600:
        raise errors.InvalidInput(f"--secure-stage-timeout must be 1..600 seconds, got {args.secure_stage_timeout}")
    for name in ("health_listen", "advertise"):
        if getattr(args, name):
            from edgeatlas.protos.wire import check_address

            check_address(getattr(args, name))
    if args.retrain_cells < 0 or args.retrain_check_s <= 0:
        raise errors.InvalidInput("--retrain-cells must not be negative and --retrain-check-s must be positive")
    os.umask(0o077)  # the database, its WAL and the tokens file: the coordinator's user's alone
    store = Store(args.db)
    tokens_file = Path(args.tokens_file) if args.tokens_file else _default_tokens_file(args.db)
    tokens, made = bootstrap_tokens(store, tokens_file, dict(os.environ))

    def ready(address: str) -> None:
        say(f"coordinator listening on {address}, database {args.db}")
        if made and sys.stdout.isatty():  # a terminal, not a log: tokens never go into logs
            say(f"enrollment token: {tokens.enroll}\nadmin token:      {tokens.admin}")
            if tokens_file:
                say(f"(saved to {tokens_file}, readable by you only)")
        elif made:
            say(f"new enrollment and admin tokens saved to {tokens_file or 'nowhere: pass --tokens-file'} "
                "(not printed: this output is not a terminal)")
        elif os.environ.get("EDGEATLAS_ENROLL_TOKEN") or os.environ.get("EDGEATLAS_ADMIN_TOKEN"):
            say("tokens: from the environment (EDGEATLAS_ENROLL_TOKEN, EDGEATLAS_ADMIN_TOKEN)"
                + (f", the rest in {tokens_file}" if tokens_file and tokens_file.exists() else ""))
        elif tokens_file and tokens_file.exists():
            say(f"tokens: as before, in {tokens_file}")

    tls = ServerTls(args.tls_cert, args.tls_key, args.tls_client_ca, args.tls_peer_ca) if args.tls_cert else None
    asyncio.run(serve(store, args.listen, Path(args.ready_file) if args.ready_file else None, ready,
                      min_devices=args.k_anonymity, tls=tls, reports_per_minute=args.report_rate,
                      retrain_cells=args.retrain_cells, retrain_check_s=args.retrain_check_s,
                      superlink=args.superlink or "", enrollments_per_hour=args.enroll_rate,
                      secure_stage_timeout_s=args.secure_stage_timeout, health_listen=args.health_listen or "",
                      advertise=args.advertise or ""))
    return 0


def _default_tokens_file(db: str) -> Path | None:
    if db.startswith("sqlite:///"):
        return Path(db[len("sqlite:///"):] + ".tokens.json")
    return None


def cmd_tls_make(args) -> int:
    from edgeatlas.console.tls import make_certificates

    files = make_certificates(args.out, args.host or ["127.0.0.1", "localhost"])
    say(f"wrote {', '.join(str(p) for p in files.values())} and their .key files (owner-only) to {args.out}")
    say("coordinator: --tls-cert server.pem --tls-key server.key [--tls-client-ca ca.pem]; "
        "agents and admins: --tls-ca ca.pem [--tls-cert client.pem --tls-key client.key]")
    return 0


def cmd_token_create(args) -> int:
    with admin_client(args) as admin:
        resp = admin.create_token(args.kind, args.ttl, args.uses)
    say(resp.token)
    return 0


def cmd_token_revoke(args) -> int:
    with admin_client(args) as admin:
        admin.revoke_token(args.token)
    say("revoked")
    return 0


def cmd_demo(args) -> int:
    from edgeatlas.console.demo import Demo, DemoOptions

    return Demo(DemoOptions(workdir=Path(args.dir), agents=args.agents, iterations=args.iterations,
                            duration_s=args.duration, keep=args.keep, simulated=args.simulated,
                            secure_cohort=args.secure_cohort,
                            dashboard=not args.no_dashboard, federated=not args.no_federated,
                            stay=args.stay if args.stay is not None else sys.stdin.isatty())).run()


def cmd_dashboard(args) -> int:
    from edgeatlas.dashboard import serve
    from edgeatlas.protos.wire import check_address

    check_address(args.coordinator)
    if not args.admin_token:
        raise errors.InvalidInput("no admin token: pass --admin-token or set EDGEATLAS_ADMIN_TOKEN")
    if not 0 <= args.port <= 65535:
        raise errors.InvalidInput(f"--port {args.port} is not in 0..65535")
    tls = {"EDGEATLAS_TLS_CA": args.tls_ca or "", "EDGEATLAS_TLS_CERT": args.tls_cert or "",
           "EDGEATLAS_TLS_KEY": args.tls_key or ""}
    proc, url = serve.start(args.coordinator, args.admin_token, args.host, args.port, tls=tls)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a stop by PID stops Streamlit too
    try:
        say(f"dashboard: {url}  (coordinator {args.coordinator}; Ctrl-C stops it)")
        if args.ready_file:
            Path(args.ready_file).write_text(json.dumps({"url": url, "pid": proc.pid}))
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        serve.stop(proc)
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def register(sub) -> None:
    p = sub.add_parser("demo", help="coordinator + agents + campaign over the zoo, then the heat-map")
    p.add_argument("--dir", default=".edgeatlas-demo", help="where the demo keeps its data")
    p.add_argument("--agents", type=int, default=2)
    p.add_argument("--iterations", type=int, default=50)
    p.add_argument("--duration", type=float, default=0.5)
    p.add_argument("--keep", action="store_true", help="keep the previous demo's data")
    p.add_argument("--simulated", type=int, default=24, help="virtual devices beside the real agents (0: none)")
    p.add_argument("--secure-cohort", type=int, default=100,
                   help="virtual devices of one product whose results a secure round sums (0: none)")
    p.add_argument("--no-dashboard", action="store_true", help="do not start the dashboard")
    p.add_argument("--no-federated", action="store_true", help="skip the federated training step")
    stay = p.add_mutually_exclusive_group()
    stay.add_argument("--stay", dest="stay", action="store_true", default=None,
                      help="keep the coordinator and dashboard up until Ctrl-C (the default in a terminal)")
    stay.add_argument("--exit", dest="stay", action="store_false", help="stop everything once it has printed")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("dashboard", help="the Streamlit dashboard over a coordinator's admin API")
    admin_options(p)
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default: this machine only)")
    p.add_argument("--port", type=int, default=8501, help="0: any free port")
    p.add_argument("--ready-file", help="write {url, pid} here once it serves")
    p.set_defaults(func=cmd_dashboard)

    coord = sub.add_parser("coordinator").add_subparsers(dest="sub", required=True)
    p = coord.add_parser("serve", help="run the coordinator")
    p.add_argument("--db", default="sqlite:///edgeatlas.db", help="sqlite:///PATH or postgresql://...")
    p.add_argument("--listen", default=DEFAULT_COORDINATOR, help="HOST:PORT (port 0: any free port)")
    p.add_argument("--tokens-file", help="where first-start tokens are saved (default: beside a SQLite db)")
    p.add_argument("--ready-file", help="write {address, pid} here once listening")
    p.add_argument("--k-anonymity", type=int, default=5,
                   help="fleet cells show values only once this many distinct devices contributed")
    p.add_argument("--tls-cert", help="server certificate (PEM); with --tls-key, serve TLS only")
    p.add_argument("--tls-key", help="server key (PEM)")
    p.add_argument("--tls-client-ca", help="require client certificates signed by this CA (mutual TLS)")
    p.add_argument("--tls-peer-ca", help="the CA that signed the replicas' certificates: a follower trusts it "
                   "when it relays a device's secure-round call to the leader (default: --tls-client-ca, "
                   "else --tls-cert itself)")
    p.add_argument("--report-rate", type=float, default=120.0, help="reports per minute per agent, at most")
    p.add_argument("--enroll-rate", type=float, default=120.0,
                   help="enrollments an hour per source address and per token, at most (bursts of as many)")
    p.add_argument("--secure-stage-timeout", type=float, default=30.0,
                   help="seconds a secure round's stage waits for its devices; who has not answered drops out")
    p.add_argument("--retrain-cells", type=int, default=0,
                   help="train a new predictor version whenever this many new cells can be learned from (0: off)")
    p.add_argument("--retrain-check-s", type=float, default=60.0, help="how often to look for new cells")
    p.add_argument("--superlink", help="HOST:PORT: run a Flower SuperLink there for federated-train campaigns "
                                       "(opted-in agents dial it; port 0: any free port)")
    p.add_argument("--health-listen", help="HOST:PORT: a plain-HTTP health endpoint for a load balancer "
                                           "(200 while the database answers; port 0: any free port)")
    p.add_argument("--advertise", help="HOST:PORT where the other replicas reach this one (PostgreSQL; default: "
                                       "the --listen address, which must then not be a wildcard)")
    p.set_defaults(func=cmd_coordinator_serve)

    tls = sub.add_parser("tls", help="certificates for TLS and mutual TLS").add_subparsers(dest="sub", required=True)
    p = tls.add_parser("make", help="a private CA, the coordinator's certificate and a client certificate")
    p.add_argument("--out", required=True)
    p.add_argument("--host", action="append", help="the coordinator's name or IP as agents dial it (repeatable)")
    p.set_defaults(func=cmd_tls_make)

    token = sub.add_parser("token").add_subparsers(dest="sub", required=True)
    p = token.add_parser("create", help="make an enrollment or admin token")
    p.add_argument("--kind", choices=["enroll", "admin"], default="enroll")
    p.add_argument("--ttl", type=int, default=0, help="seconds until it expires (0: never)")
    p.add_argument("--uses", type=int, default=1,
                   help="enrollments it allows (default 1: one device; 0: unlimited, for a fleet image)")
    admin_options(p)
    p.set_defaults(func=cmd_token_create)
    p = token.add_parser("revoke", help="an enrollment or admin token stops working")
    p.add_argument("token")
    admin_options(p)
    p.set_defaults(func=cmd_token_revoke)


"""What every subject's commands share: option groups, coordinator clients, exit codes, printing."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from edgeatlas.protos import errors
from edgeatlas.protos.scenarios import SCENARIOS
from edgeatlas.protos.wire import DEFAULT_COORDINATOR

EXIT_INPUT = 2  # bad input: one line on stderr naming what is wrong
EXIT_UNAVAILABLE = 3  # the coordinator could not be reached


def key_values(pairs: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise errors.InvalidInput(f"{what} {pair!r} is not KEY=VALUE")
        out[key] = value
    return out


def admin_client(args):
    from edgeatlas.protos.admin_client import AdminClient
    return AdminClient(args.coordinator, args.admin_token, client_tls(args))


def client_tls(args):
    from edgeatlas.protos.wire import ClientTls

    if not args.tls_ca:
        if args.tls_cert or args.tls_key:
            raise errors.InvalidInput("--tls-cert and --tls-key need --tls-ca (the CA that signed the coordinator)")
        return None
    return ClientTls(ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key)


def say(text: str) -> None:
    print(text, flush=True)


def scenario_setting(args, **fields):
    """Setting and RunParams from the shared run options; minimum queries default by scenario."""
    from edgeatlas.protos import scenarios
    from edgeatlas.protos.records import RunParams, Setting

    params_kv = key_values(args.param, "--param")
    scenarios.check(args.scenario, params_kv)
    iterations = args.iterations if args.iterations is not None else (
        scenarios.LLM_REQUESTS if fields.get("runtime") == "llama.cpp" else
        100 if args.scenario == "single-stream" else scenarios.MIN_QUERIES[args.scenario])
    check_positive(batch=args.batch, iterations=iterations, duration=args.duration)
    setting = Setting(batch=args.batch, threads=args.threads, scenario=args.scenario,
                      scenario_params=params_kv, **fields)
    params = RunParams(warmup_iterations=args.warmup, min_iterations=iterations, min_duration_s=args.duration,
                       max_duration_s=max(args.duration * 10, 60.0))
    return setting, params


def check_positive(**values) -> None:
    for name, value in values.items():
        if value <= 0:
            raise errors.InvalidInput(f"--{name.replace('_', '-')} must be positive, got {value}")


def admin_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--coordinator", default=os.environ.get("EDGEATLAS_COORDINATOR", DEFAULT_COORDINATOR),
                   help="HOST:PORT (env EDGEATLAS_COORDINATOR)")
    p.add_argument("--admin-token", default=os.environ.get("EDGEATLAS_ADMIN_TOKEN"),
                   help="admin token (env EDGEATLAS_ADMIN_TOKEN)")
    tls_options(p)


def tls_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tls-ca", default=os.environ.get("EDGEATLAS_TLS_CA"),
                   help="CA certificate that signed the coordinator's (env EDGEATLAS_TLS_CA); enables TLS")
    p.add_argument("--tls-cert", default=os.environ.get("EDGEATLAS_TLS_CERT"), help="client certificate (mutual TLS)")
    p.add_argument("--tls-key", default=os.environ.get("EDGEATLAS_TLS_KEY"), help="client key (mutual TLS)")


def run_options(p: argparse.ArgumentParser, iterations: int, duration: float) -> None:
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: the runtime's default)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iterations", type=int, default=None,
                   help=f"at least this many timed queries (default {iterations} single-stream, "
                        "LoadGen's early-stopping minimum otherwise, 10 requests for LLMs)")
    p.add_argument("--scenario", default="single-stream", choices=list(SCENARIOS),
                   help="MLPerf LoadGen scenario; LLM (GGUF) tasks run single-stream")
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="scenario parameter: prompt_tokens, output_tokens, gpu_layers (LLM); samples_per_query "
                        "(multi-stream); target_qps, latency_bound_ms, search_steps (server)")
    p.add_argument("--duration", type=float, default=duration, help="and at least this many seconds")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls first")


def input_options(p: argparse.ArgumentParser) -> None:
    """The input spec (protos/inputs.py), the same flags wherever a model is given."""
    p.add_argument("--input", action="append", metavar="NAME=SHAPE",
                   help="an input's shape, e.g. images=1x3x640x640 or x=batchx3x224x224 (repeatable)")
    p.add_argument("--dim", action="append", metavar="NAME=N",
                   help="the size of a named dynamic dimension, e.g. seq=128 (repeatable)")
    p.add_argument("--values", action="append", metavar="NAME=SOURCE",
                   help="an input's values: normal, uniform:LO:HI, int:LO:HI, tokens:V, fixed:V, zeros, "
                        "feedback:OUTPUT or file:PATH.npy (repeatable)")


def input_request(args):
    from edgeatlas.protos.inputs import request_from_flags
    return request_from_flags(args.input, args.dim, args.values)


def enroll_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--coordinator", default=os.environ.get("EDGEATLAS_COORDINATOR", DEFAULT_COORDINATOR),
                   help="HOST:PORT (env EDGEATLAS_COORDINATOR)")
    p.add_argument("--token-file", help="read the enrollment token from this file (or set EDGEATLAS_ENROLL_TOKEN)")
    p.add_argument("--token", help=argparse.SUPPRESS)  # refused by enroll_token: argv is public (ps)


def enroll_token(args) -> str | None:
    """The enrollment token from --token-file or EDGEATLAS_ENROLL_TOKEN; never from the command line, which
    every user of the machine can read in ps."""
    if args.token:
        raise errors.InvalidInput("--token would show the token to every user of this machine (ps): "
                                  "give --token-file FILE or set EDGEATLAS_ENROLL_TOKEN")
    if args.token_file:
        try:
            return Path(args.token_file).read_text().strip() or None
        except OSError as exc:
            raise errors.InvalidInput(f"cannot read --token-file {args.token_file}: {exc.strerror}") from None
    return os.environ.get("EDGEATLAS_ENROLL_TOKEN") or None

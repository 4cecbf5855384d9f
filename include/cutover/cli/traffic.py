"""`cutover traffic`: the sample application's requests through the routing layer."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from cutover.cli.common import EXIT_FAILED, Subparsers, add_command
from cutover.settings import Settings


def cmd_traffic(args: argparse.Namespace) -> int:
    """The sample application's traffic through the routing layer; Ctrl-C stops it cleanly."""
    import signal
    import threading

    from cutover.contract.load import load_contract
    from cutover.routing.layer import DualDatabase
    from cutover.sample.traffic import progress_line, run_traffic, summary_lines

    contract = load_contract(args.contract)
    # one warning per request while a store is down would bury the progress lines: the
    # layer's own log goes to a file, the summary counts what it says
    from cutover.settings import LOCAL_DIR

    log_file = LOCAL_DIR / "logs" / contract.name / "traffic.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in ("cutover.routing", "cutover.phases"):
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).propagate = False
    print(f"layer log: {log_file}", file=sys.stderr)
    layer = DualDatabase(contract, Settings.from_env(), shadow_rate=args.shadow_rate)
    stop = threading.Event()

    def interrupted(signum: int, frame: object) -> None:
        print("stopping (Ctrl-C again to abort) ...", file=sys.stderr, flush=True)
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        summary = run_traffic(
            layer,
            rate=args.rate,
            duration=args.duration,
            threads=args.threads,
            seed=args.seed,
            log_path=Path(args.log) if args.log else None,
            stop=stop,
            progress=lambda p: print(progress_line(p), file=sys.stderr, flush=True),
        )
    finally:
        signal.signal(signal.SIGINT, previous)
        layer.close()
    for line in summary_lines(summary):
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2, default=str) + "\n")
        print(f"json: {args.json}")
    return 0 if summary["failed"] == 0 else EXIT_FAILED


def register(sub: Subparsers) -> None:
    p = add_command(
        sub, "traffic", cmd_traffic, "act as the sample application through the routing layer"
    )
    p.add_argument("contract", help="path of the contract JSON")
    p.add_argument("--rate", type=float, required=True, help="requests per second, all threads")
    p.add_argument("--duration", type=float, required=True, help="seconds to run")
    p.add_argument("--threads", type=int, default=4, help="application threads (default 4)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.add_argument(
        "--shadow-rate",
        type=float,
        default=1.0,
        help="share of reads compared with the other store in phases 3-4 (default 1)",
    )
    p.add_argument("--log", help="write one JSON line per committed write and read answer here")
    p.add_argument("--json", help="also write the summary to this JSON file")

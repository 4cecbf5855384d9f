"""`cutover phase`: show a contract's migration phase, move it forward or back, unfence it."""

from __future__ import annotations

import argparse
import json
import os
import sys

from cutover.cli.common import EXIT_FAILED, Subparsers, add_command, add_group, positive
from cutover.settings import Settings


def _actor() -> str:
    import getpass

    return os.environ.get("CUTOVER_ACTOR") or getpass.getuser()


def cmd_phase(args: argparse.Namespace) -> int:
    from cutover.contract.load import load_contract
    from cutover.moves import phase_mover, unfence
    from cutover.phases.model import FLAGS, Phase
    from cutover.phases.transitions import GateRefused, advance, check_gate, rollback
    from cutover.stages import phase_store

    contract = load_contract(args.contract)
    settings = Settings.from_env()
    store = phase_store(settings)
    if args.phase_command == "show":
        state = store.get(contract.name)
        print(
            json.dumps(
                {**state.to_dict(), "evidence": store.evidence(contract.name)},
                indent=2,
                default=str,
            )
        )
        return 0
    if args.phase_command == "unfence":
        state = unfence(contract, settings, actor=_actor(), reason=args.reason)
        print(f"{contract.name}: at {state.phase.value} {state.phase.slug}, epoch "
              f"{state.version}, no move in progress; writes are open")  # fmt: skip
        return 0
    mover = phase_mover(contract, settings, timeout_seconds=args.timeout)
    if args.phase_command == "rollback":
        state = rollback(store, contract, reason=args.reason, actor=_actor(), move=mover)
        print(f"{contract.name}: rolled back to {state.phase.value} {state.phase.slug} "
              f"(writes fenced {state.fenced_seconds} s)")  # fmt: skip
        return 0
    target = Phase.parse(args.to) if args.to else Phase(store.get(contract.name).phase + 1)
    if not args.approved_by:
        _, decision = check_gate(store, contract, target)
        print(decision.summary())
        print(
            "not moved: an advance needs a person's approval (the phase_gate DAG asks for it;"
            " or pass --approved-by NAME to record who approved it)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    try:
        state = advance(store, contract, target, approved_by=args.approved_by, actor=_actor(),
                        move=mover)  # fmt: skip
    except GateRefused as exc:
        print(exc.decision.summary(), file=sys.stderr)
        return EXIT_FAILED
    print(
        f"{contract.name}: now at {state.phase.value} {state.phase.slug} "
        f"(approved by {args.approved_by}) flags {FLAGS[state.phase].to_dict()}; writes "
        f"fenced {state.fenced_seconds} s"
    )
    return 0


def register(sub: Subparsers) -> None:
    phase_sub = add_group(sub, "phase", "show or move a contract's migration phase")
    p = add_command(
        phase_sub, "show", cmd_phase, "the current phase, its flags and the recorded evidence"
    )
    p.add_argument("contract")
    p = add_command(
        phase_sub, "advance", cmd_phase, "move one phase forward when the evidence meets the gate"
    )
    p.add_argument("contract")
    p.add_argument("--to", help="target phase (number or name); default: the next one")
    p.add_argument("--approved-by", help="record NAME as the approver (no approval step)")
    p.add_argument("--timeout", type=positive(float), default=60.0,
                   help="seconds the move may wait for writers and the follower store "
                   "(default 60); the phase stays when they run out")  # fmt: skip
    p = add_command(
        phase_sub, "rollback", cmd_phase, "move one phase back; no gate, a reason is required"
    )
    p.add_argument("contract")
    p.add_argument("--reason", required=True)
    p.add_argument("--timeout", type=positive(float), default=60.0,
                   help="seconds the move may wait for writers and the follower store "
                   "(default 60)")  # fmt: skip
    p = add_command(
        phase_sub,
        "unfence",
        cmd_phase,
        "clear the fence a failed or killed phase move left: abort the move in progress and "
        "open writes at the current phase",
    )
    p.add_argument("contract")
    p.add_argument("--reason", required=True)

"""The one list of benchmarks (task names) and their groups; kept free of heavy imports so the CLI can use it."""

ALL_TASKS: tuple[str, ...] = ("scanrefer", "multi3drefer", "scan2cap", "scanqa", "sqa3d")
GROUNDING_TASKS: tuple[str, ...] = ("scanrefer", "multi3drefer")  # answered by the grounding head
PROPOSAL_TASKS: tuple[str, ...] = (*GROUNDING_TASKS, "scan2cap")  # read detector proposals

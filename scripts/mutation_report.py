"""Print mutmut's results as a score per module, and list the mutants that survived.

Run by ``make mutation`` after ``mutmut run``; reads ``mutmut results --all true``.
"""

from __future__ import annotations

import collections
import re
import subprocess
import sys

KILLED = {"killed", "timeout", "segfault"}
# Not counted either way: mutants no test reaches, or that mutmut could not run.
UNSCORED = {"no tests", "skipped", "not checked", "suspicious", "check was interrupted by user"}


def main() -> int:
    listed = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        capture_output=True,
        text=True,
        check=True,
    )
    outcomes: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    survivors: list[str] = []
    for line in listed.stdout.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if "__mutmut_" not in name:
            continue
        # runway_provider.models.x_normalize_task__mutmut_3, runway_provider.models.xǁRunwayTaskǁto_dict__mutmut_1
        module = re.split(r"\.x(?:_|ǁ)", name)[0]
        outcomes[module][status] += 1
        if status == "survived":
            survivors.append(name)
    print(f"{'module':<52} {'killed':>7} {'survived':>9} {'score':>7}")
    total_killed = total_scored = 0
    for module in sorted(outcomes):
        counts = outcomes[module]
        killed = sum(counts[s] for s in KILLED)
        scored = killed + counts["survived"]
        total_killed, total_scored = total_killed + killed, total_scored + scored
        score = f"{100 * killed / scored:.1f}%" if scored else "n/a"
        print(f"{module:<52} {killed:>7} {counts['survived']:>9} {score:>7}")
    if total_scored:
        print(
            f"{'all':<52} {total_killed:>7} {total_scored - total_killed:>9} {100 * total_killed / total_scored:>6.1f}%"
        )
    print(f"\n{len(survivors)} surviving mutants (mutmut show NAME prints one):")
    for name in survivors:
        print(f"  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

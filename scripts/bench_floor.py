"""The pyinfra floor for scripts/bench.py: what any pyinfra deploy costs on these hosts.

One fact (one remote `sha256sum` of main.cf and master.cf) and one operation that
yields nothing: connecting, one remote command per host, pyinfra's own bookkeeping.

    pyinfra inventories/sandbox.py scripts/bench_floor.py -y
"""

from pyinfra import host
from pyinfra.api import FactBase, operation


class ConfigDigest(FactBase):
    """sha256 of main.cf and master.cf."""

    def command(self) -> str:
        return "sha256sum /etc/postfix/main.cf /etc/postfix/master.cf"

    def process(self, output: list[str]) -> list[str]:
        return output


@operation()
def nothing(digest: list[str]):
    """Yields no command: the floor's only operation never changes anything."""
    if not digest:
        yield "true"


nothing(host.get_fact(ConfigDigest), name="Floor: one fact, nothing to do")

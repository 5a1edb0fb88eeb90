"""The ``zoo`` command."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``zoo`` console script."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["cells"]:
        from zoo.cells import get_cell_spec, list_cells

        for name in list_cells():
            spec = get_cell_spec(name)
            print(f"{name:10s} fused={spec.fused!s:5s} parallel={spec.parallel!s:5s} {spec.paper}")
        return 0
    print("usage: zoo cells", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())

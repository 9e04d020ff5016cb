"""python -m fastrand info | selftest"""

import json
import sys

USAGE = """usage: python -m fastrand COMMAND
  info       print what this build and machine offer (JSON)
  selftest   check the spec's known answers and CPU/GPU identity; exit 1 on any mismatch"""


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["info"]:
        from fastrand._api import build_info

        print(json.dumps(build_info(), indent=2))
        return 0
    if argv == ["selftest"]:
        from fastrand._selftest import selftest

        return selftest()
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""python -m fastrand info: print what this build and machine offer."""

import json
import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv != ["info"]:
        print("usage: python -m fastrand info", file=sys.stderr)
        return 2
    import fastrand

    print(json.dumps(fastrand.build_info(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Counts SASS instructions per kernel in `cuobjdump -sass` output (the size of each loop body
is what bounds an instruction-bound kernel). Usage: python sass_count.py sass.txt"""

import re
import sys
from collections import Counter


def main(path):
    kernels, name, ops = {}, None, None
    for line in open(path, errors="replace"):
        m = re.search(r"Function : (\S+)", line)
        if m:
            name = m.group(1)
            ops = kernels.setdefault(name, Counter())
            continue
        m = re.match(r"\s+/\*[0-9a-f]{4}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)", line)
        if m and ops is not None:
            ops[m.group(1).split(".")[0]] += 1
    for name, ops in kernels.items():
        if "fill_kernel" not in name:
            continue
        total = sum(ops.values())
        top = ", ".join(f"{k} {v}" for k, v in ops.most_common(8))
        m = re.search(r"fill_kernelINS_\w*?v1\d+(\w+?)E([jm])Li(\d+)E", name)
        short = (
            f"{m.group(1)} idx{'32' if m.group(2) == 'j' else '64'} x{m.group(3)}"
            if m
            else name[:90]
        )
        print(f"{total:6d}  {short:28s} {top}")


if __name__ == "__main__":
    main(sys.argv[1])

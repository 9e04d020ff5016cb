// Prints stream v1 values computed by the portable (scalar) CPU loop, for tests that build this
// file with another compiler or for another architecture (e.g. aarch64 under qemu) and compare
// the output with the NumPy reference. Usage: stream_dump SEED STREAM OFFSET N KIND DTYPE
// (KIND/DTYPE codes of fastrand_stream.h); prints the N values' bit patterns in hex, one line.
#include <stdio.h>
#include <stdlib.h>

#include <vector>

#define FR_ISA_NS isa_dump
#include "cpu_kernel.h"

int main(int argc, char** argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: %s SEED STREAM OFFSET N KIND DTYPE\n", argv[0]);
    return 2;
  }
  fastrand::Request r;
  r.seed = strtoull(argv[1], nullptr, 0);
  r.stream = strtoull(argv[2], nullptr, 0);
  r.offset = strtoull(argv[3], nullptr, 0);
  r.n = strtoull(argv[4], nullptr, 0);
  r.kind = atoi(argv[5]);
  r.dtype = atoi(argv[6]);
  const int width = r.dtype == fastrand::v1::DT_FLOAT64 ? 8
                    : (r.dtype == fastrand::v1::DT_FLOAT16 || r.dtype == fastrand::v1::DT_BFLOAT16)
                        ? 2
                        : 4;
  std::vector<unsigned char> buf(r.n * width + 16);
  r.out = buf.data();
  fastrand::isa_dump::fill_piece(r, 0, r.n);
  for (uint64_t i = 0; i < r.n; ++i) {
    unsigned long long v = 0;
    memcpy(&v, buf.data() + i * width, width);
    printf(i ? " %llx" : "%llx", v);
  }
  printf("\n");
  return 0;
}

// Runs the CPU core outside Python (backend.h: cpu_fill, cpu_fill_box, cpu_transform_blocks
// behind the real instruction-set dispatch and worker pool), for tests that build it with
// another compiler or for another architecture (aarch64 under qemu) and compare the values with
// the NumPy reference. Usage: cpu_core_run CASES OUT, or cpu_core_run info (prints the paths
// available, the one selected at start ($FASTRAND_CPU_ISA or the best) and the warning for a
// $FASTRAND_CPU_ISA that names no path, one a line).
// CASES is a text file, one request a line (numbers in C syntax, KIND/DTYPE codes of
// fastrand_stream.h, MISALIGN: values the output sits past a 64-byte boundary):
//   fill ISA THREADS KIND DTYPE SEED STREAM OFFSET N MISALIGN
//   box ISA THREADS KIND DTYPE SEED STREAM OFFSET NDIM BASE SIZE*NDIM GSTRIDE*NDIM MISALIGN
//   transform ISA KIND DTYPE WORDS (a file of blocks' four 32-bit words, little-endian)
// OUT receives each request's values (little-endian bit patterns), one request after another.
// Bytes around every output are checked untouched. Exits 1 on a malformed line, an unknown ISA
// or a write outside an output.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <string>
#include <vector>

#include "backend.h"
#include "fastrand_stream.h"

using namespace fastrand;

namespace {

constexpr size_t GUARD = 64;
constexpr unsigned char FILL = 0xA5;

size_t width(int dtype) {
  return dtype == v1::DT_FLOAT64                                 ? 8
         : (dtype == v1::DT_FLOAT16 || dtype == v1::DT_BFLOAT16) ? 2
                                                                 : 4;
}

int fail(int line, const char* what) {
  fprintf(stderr, "cpu_core_run: line %d: %s\n", line, what);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && strcmp(argv[1], "info") == 0) {
    for (const std::string& name : cpu_isa_available()) printf("%s ", name.c_str());
    printf("\n%s\n%s\n", cpu_isa_selected().c_str(), cpu_isa_env_warning().c_str());
    return 0;
  }
  if (argc != 3) {
    fprintf(stderr, "usage: %s CASES OUT | info\n", argv[0]);
    return 2;
  }
  FILE* in = fopen(argv[1], "r");
  FILE* out = fopen(argv[2], "wb");
  if (in == nullptr || out == nullptr) {
    perror("cpu_core_run");
    return 2;
  }
  std::vector<char> text(1 << 20);
  std::vector<unsigned char> buf;
  for (int line = 1; fgets(text.data(), int(text.size()), in) != nullptr; ++line) {
    std::vector<std::string> tok;
    for (char* t = strtok(text.data(), " \t\n"); t != nullptr; t = strtok(nullptr, " \t\n"))
      tok.push_back(t);
    if (tok.empty()) continue;
    auto num = [&](size_t i) { return i < tok.size() ? strtoull(tok[i].c_str(), nullptr, 0) : 0; };
    const std::string& mode = tok[0];
    const bool fill = mode == "fill", box = mode == "box", transform = mode == "transform";
    if (!fill && !box && !transform) return fail(line, "unknown mode");
    if (tok.size() < 2 || !cpu_isa_select(tok[1])) return fail(line, "ISA not available");
    Request r{};
    size_t at = 2;
    int threads = 1;
    if (!transform) threads = int(num(at++));
    r.kind = int(num(at++));
    r.dtype = int(num(at++));
    if (!valid_kind_dtype(r.kind, r.dtype)) return fail(line, "bad kind/dtype");
    Box b{};
    std::vector<uint32_t> words;
    size_t misalign = 0;
    if (transform) {
      FILE* f = at + 1 == tok.size() ? fopen(tok[at].c_str(), "rb") : nullptr;
      if (f == nullptr) return fail(line, "cannot open the words file");
      uint32_t block[4];
      while (fread(block, sizeof(block), 1, f) == 1) words.insert(words.end(), block, block + 4);
      fclose(f);
      r.n = words.size() / 4 * (r.dtype == v1::DT_FLOAT64 ? 2 : 4);
    } else {
      r.seed = num(at++);
      r.stream = num(at++);
      r.offset = num(at++);
      if (fill) {
        r.n = num(at++);
      } else {
        b.ndim = int(num(at++));
        if (b.ndim < 1 || b.ndim > MAX_BOX_DIMS) return fail(line, "bad NDIM");
        b.base = num(at++);
        r.n = 1;
        for (int d = 0; d < b.ndim; ++d) r.n *= b.size[d] = num(at++);
        for (int d = 0; d < b.ndim; ++d) b.gstride[d] = num(at++);
      }
      misalign = num(at++);
      if (tok.size() != at) return fail(line, "wrong number of fields");
    }
    const size_t w = width(r.dtype), bytes = r.n * w, lead = GUARD + misalign * w;
    buf.assign(lead + bytes + GUARD + 64, FILL);
    unsigned char* base = buf.data() + (64 - reinterpret_cast<uintptr_t>(buf.data()) % 64);
    r.out = base + lead;
    if (fill) cpu_fill(r, threads);
    if (box) cpu_fill_box(r, b, threads);
    if (transform) cpu_transform_blocks(r.kind, r.dtype, words.data(), r.out, words.size() / 4);
    for (size_t i = 0; i < lead; ++i)
      if (base[i] != FILL) return fail(line, "wrote before the output");
    for (size_t i = lead + bytes; i < lead + bytes + GUARD; ++i)
      if (base[i] != FILL) return fail(line, "wrote past the output");
    if (fwrite(r.out, 1, bytes, out) != bytes) return fail(line, "write error");
  }
  fclose(in);
  return fclose(out) == 0 ? 0 : 2;
}

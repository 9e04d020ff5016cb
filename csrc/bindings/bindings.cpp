// Python bindings of the compiled core (module fastrand._C). Raw pointers and integers only:
// torch never enters the compiled code.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "backend.h"
#include "fastrand_stream.h"
#include "math_probe.h"
#include "gil.h"
#include "parallel.h"
#include "torch_state.h"

namespace py = pybind11;
using namespace fastrand;

namespace fastrand {
void bind_cuda(py::module_& m);  // bindings_cuda.cpp
}

#ifndef FASTRAND_VERSION
#define FASTRAND_VERSION "0.0.0"
#endif

namespace {

Request make_request(uintptr_t ptr, uint64_t n, int kind, int dtype, uint64_t seed, uint64_t stream,
                     uint64_t offset) {
  if (!valid_kind_dtype(kind, dtype))
    throw py::value_error("fastrand._C: unsupported (kind, dtype) code pair");
  if (n != 0 && ptr == 0) throw py::value_error("fastrand._C: null output pointer");
  return Request{reinterpret_cast<void*>(ptr), n, kind, dtype, seed, stream, offset};
}

void fill_cpu(uintptr_t ptr, uint64_t n, int kind, int dtype, uint64_t seed, uint64_t stream,
              uint64_t offset, int threads) {
  const Request r = make_request(ptr, n, kind, dtype, seed, stream, offset);
  without_gil([&] { cpu_fill(r, threads); });
}

// The Box of a region draw from Python lists (see backend.h); its numel in *n.
Box box_arg(uint64_t base, const std::vector<uint64_t>& sizes,
            const std::vector<uint64_t>& gstrides, uint64_t* n) {
  if (sizes.empty() || sizes.size() > size_t(MAX_BOX_DIMS))
    throw py::value_error("fastrand._C: a box has 1 to 8 dimensions");
  if (gstrides.size() != sizes.size())
    throw py::value_error("fastrand._C: a box needs one global stride per dimension");
  if (gstrides.back() != 1)
    throw py::value_error("fastrand._C: a box's last dimension needs global stride 1");
  Box box{int(sizes.size()), base, {}, {}};
  uint64_t total = 1;
  for (size_t d = 0; d < sizes.size(); ++d) {
    box.size[d] = sizes[d];
    box.gstride[d] = gstrides[d];
    if (sizes[d] != 0 && total > (uint64_t(1) << 63) / sizes[d])
      throw py::value_error("fastrand._C: a box of more than 2^63 values");
    total *= sizes[d];
  }
  *n = total;
  return box;
}

void fill_box_cpu(uintptr_t ptr, int kind, int dtype, uint64_t seed, uint64_t stream,
                  uint64_t offset, uint64_t base, const std::vector<uint64_t>& sizes,
                  const std::vector<uint64_t>& gstrides, int threads) {
  uint64_t n = 0;
  const Box box = box_arg(base, sizes, gstrides, &n);
  const Request r = make_request(ptr, n, kind, dtype, seed, stream, offset);
  without_gil([&] { cpu_fill_box(r, box, threads); });
}

void probe_cpu(int which, uintptr_t ptr, uint64_t first, uint64_t count, int threads) {
  if (which != PROBE_RADIUS32 && which != PROBE_ANGLE32)
    throw py::value_error("fastrand._C: unknown probe");
  float* out = reinterpret_cast<float*>(ptr);
  const uint64_t t = threads < 1 ? 1 : uint64_t(threads);
  const uint64_t piece = (count + t - 1) / t;
  const uint64_t pieces = piece == 0 ? 0 : (count + piece - 1) / piece;
  without_gil([=] {
    run_pieces(pieces, [=](uint64_t k) {
      const uint64_t lo = k * piece, hi = (lo + piece < count) ? lo + piece : count;
      for (uint64_t i = lo; i < hi; ++i) probe_eval(which, out, i, first);
    });
  });
}

// The data of `fresh`, torch's CPU generator state right after manual_seed (5056 bytes).
const uint8_t* fresh_arg(const py::object& fresh) {
  char* data = nullptr;
  Py_ssize_t len = 0;
  if (!PyBytes_Check(fresh.ptr()) || PyBytes_AsStringAndSize(fresh.ptr(), &data, &len) != 0 ||
      size_t(len) != CPU_STATE_BYTES)
    throw py::value_error("fastrand._C: fresh(seed) must return 5056 bytes");
  return reinterpret_cast<const uint8_t*>(data);
}

// A CPU torch.Generator's draw in one call: get_state(), the core's read of it (csrc/cpu/
// torch_state.cpp), the state after the draw written to one reused buffer, set_state(buffer).
// The generator is only called through its Python methods: torch never enters the compiled
// code. One lock covers get_state..set_state, so two threads never read the same state; it is
// taken with the GIL released when another thread holds it (that thread needs the GIL to
// finish), and a draw started again on the thread that holds it (a finalizer or a state hook
// drawing inside a draw) is an error, not a deadlock.
class TorchCpuReader {
 public:
  // buffer: a CPU torch.uint8 tensor of CPU_STATE_BYTES (what set_state receives);
  // fresh: seed -> bytes of torch's state right after manual_seed(seed).
  // trusted: torch.Generator itself, whose get_state always returns a new contiguous CPU
  // uint8 tensor; any other type's state is checked to be one before its bytes are read.
  TorchCpuReader(size_t capacity, py::object buffer, py::object fresh, py::object trusted)
      : states_(capacity),
        buf_(std::move(buffer)),
        fresh_(std::move(fresh)),
        trusted_(std::move(trusted)) {
    if (buf_.attr("numel")().cast<uint64_t>() != CPU_STATE_BYTES)
      throw py::value_error("fastrand._C: buffer must hold 5056 bytes");
    out_ = reinterpret_cast<uint8_t*>(buf_.attr("data_ptr")().cast<uintptr_t>());
    if (out_ == nullptr) throw py::value_error("fastrand._C: null buffer");
  }

  py::tuple reserve(const py::object& g, uint64_t n, bool two_words) {
    std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);
    if (!lock.owns_lock()) {
      if (owner_ == std::this_thread::get_id())
        throw std::runtime_error(
            "generator: a torch.Generator draw started inside another one on the same thread "
            "(from a finalizer or a get_state/set_state hook); draw outside it");
      without_gil([&] { lock.lock(); });
    }
    struct Owner {  // who holds the lock, for the check above
      std::atomic<std::thread::id>& id;
      explicit Owner(std::atomic<std::thread::id>& i) : id(i) { id = std::this_thread::get_id(); }
      ~Owner() { id = std::thread::id(); }
    } owner(owner_);
    // interned once and kept for the process (a static py::object would be released after
    // the interpreter is gone)
    static const py::handle get_state = PyUnicode_InternFromString("get_state"),
                            set_state = PyUnicode_InternFromString("set_state"),
                            numel = PyUnicode_InternFromString("numel"),
                            data_ptr = PyUnicode_InternFromString("data_ptr");
    const py::object state = g.attr(get_state)();
    if (Py_TYPE(g.ptr()) != reinterpret_cast<PyTypeObject*>(trusted_.ptr())) check_layout(state);
    if (state.attr(numel)().cast<uint64_t>() != CPU_STATE_BYTES)
      throw py::value_error(
          "generator: this torch's CPU generator state has " +
          py::str(state.attr(numel)()).cast<std::string>() +
          " bytes, not the 5056 of the layout fastrand reads (docs/torch-generators.md)");
    const auto* at = reinterpret_cast<const uint8_t*>(state.attr(data_ptr)().cast<uintptr_t>());
    if (at == nullptr) throw py::value_error("fastrand._C: null state pointer");
    const int per_block = two_words ? 2 : 1;
    CpuPosition p;
    if (!states_.draw(at, nullptr, n, per_block, out_, &p)) {
      // not a state this reader wrote lately: rules 1, 2, 3 with torch's seeded state
      const py::object fresh = fresh_(p.seed);
      states_.draw(at, fresh_arg(fresh), n, per_block, out_, &p);
    }
    g.attr(set_state)(buf_);
    return py::make_tuple(p.seed, p.stream, p.offset);
  }

 private:
  // A state from a torch.Generator subclass: a CPU uint8 tensor whose bytes are its elements.
  static void check_layout(const py::object& state) {
    const py::module_ torch = py::module_::import("torch");
    const bool ok = py::isinstance(state, torch.attr("Tensor")) &&
                    state.attr("dtype").is(torch.attr("uint8")) &&
                    state.attr("is_cpu").cast<bool>() && state.attr("is_contiguous")().cast<bool>();
    if (!ok)
      throw py::value_error("generator: get_state() returned " +
                            py::repr(state).cast<std::string>().substr(0, 80) +
                            ", not a contiguous CPU torch.uint8 tensor (the layout fastrand reads, "
                            "docs/torch-generators.md)");
  }

  CpuStates states_;
  py::object buf_, fresh_, trusted_;
  uint8_t* out_ = nullptr;
  std::mutex mutex_;
  std::atomic<std::thread::id> owner_{};
};

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastrand compiled core: noise stream v1 on raw buffers (no torch inside)";
  m.attr("__version__") = FASTRAND_VERSION;
  m.attr("STREAM_VERSION") = 1;
  m.attr("KIND_NORMAL") = int(v1::KIND_NORMAL);
  m.attr("KIND_UNIFORM") = int(v1::KIND_UNIFORM);
  m.attr("KIND_WORDS") = int(v1::KIND_WORDS);
  m.attr("DT_FLOAT32") = int(v1::DT_FLOAT32);
  m.attr("DT_FLOAT16") = int(v1::DT_FLOAT16);
  m.attr("DT_BFLOAT16") = int(v1::DT_BFLOAT16);
  m.attr("DT_FLOAT64") = int(v1::DT_FLOAT64);
  m.attr("DT_UINT32") = int(v1::DT_UINT32);
  m.attr("PROBE_RADIUS32") = int(PROBE_RADIUS32);
  m.attr("PROBE_ANGLE32") = int(PROBE_ANGLE32);

  m.def("fill_cpu", &fill_cpu, py::arg("ptr"), py::arg("n"), py::arg("kind"), py::arg("dtype"),
        py::arg("seed"), py::arg("stream"), py::arg("offset"), py::arg("threads"),
        "Write n values of the stream to the buffer at ptr (GIL released).");
  m.def(
      "transform_cpu",
      [](int kind, int dtype, uintptr_t words, uintptr_t out, uint64_t nblocks) {
        const Request r = make_request(out, nblocks, kind, dtype, 0, 0, 0);
        if (nblocks != 0 && words == 0) throw py::value_error("fastrand._C: null words pointer");
        without_gil([&] {
          cpu_transform_blocks(kind, dtype, reinterpret_cast<const uint32_t*>(words), r.out,
                               nblocks);
        });
      },
      py::arg("kind"), py::arg("dtype"), py::arg("words"), py::arg("out"), py::arg("nblocks"),
      "Tests: the values of nblocks blocks from their given words (4 uint32 each) on the "
      "selected CPU path.");
  m.def("fill_box_cpu", &fill_box_cpu, py::arg("ptr"), py::arg("kind"), py::arg("dtype"),
        py::arg("seed"), py::arg("stream"), py::arg("offset"), py::arg("base"), py::arg("sizes"),
        py::arg("gstrides"), py::arg("threads"),
        "Write the box's values (backend.h Box; n = prod(sizes)) to the buffer at ptr.");
  m.def("probe_cpu", &probe_cpu, py::arg("which"), py::arg("ptr"), py::arg("first"),
        py::arg("count"), py::arg("threads"));
  m.def(
      "philox",
      [](std::vector<uint32_t> ctr, std::vector<uint32_t> key) {
        if (ctr.size() != 4 || key.size() != 2)
          throw py::value_error("philox: ctr needs 4 words and key 2");
        const v1::Words4 w = v1::philox(v1::Words4{ctr[0], ctr[1], ctr[2], ctr[3]}, key[0], key[1]);
        return std::vector<uint32_t>{w.x, w.y, w.z, w.w};
      },
      py::arg("ctr"), py::arg("key"), "Philox4x32-10 of one counter (known-answer tests).");
  m.def(
      "torch_cpu_state",
      [](uint64_t seed, uint64_t stream, uint64_t pos) {
        std::string out(CPU_STATE_BYTES, '\0');
        cpu_state_build(seed, stream, pos, reinterpret_cast<uint8_t*>(&out[0]));
        return py::bytes(out);
      },
      py::arg("seed"), py::arg("stream"), py::arg("pos"),
      "The CPU torch.Generator state a draw ending at pos of stream leaves behind "
      "(docs/torch-generators.md).");
  m.def(
      "torch_philox_draw",
      [](uint64_t seed, uint64_t offset, uint64_t n, bool two_words) {
        const PhiloxDraw d = philox_draw(seed, offset, n, two_words ? 2 : 1);
        return py::make_tuple(d.generation, d.position, d.after);
      },
      py::arg("seed"), py::arg("offset"), py::arg("n"), py::arg("two_words"),
      "(generation, position, offset after) of an n-value draw from a Philox torch.Generator "
      "state (seed, offset) (docs/torch-generators.md).");
  py::class_<TorchCpuReader>(m, "TorchCpuReader",
                             "A CPU torch.Generator's draw in one call: get_state, the read, "
                             "the state after the draw, set_state, under one lock.")
      .def(py::init<size_t, py::object, py::object, py::object>(), py::arg("capacity"),
           py::arg("buffer"), py::arg("fresh"), py::arg("trusted"))
      .def("reserve", &TorchCpuReader::reserve, py::arg("generator"), py::arg("n"),
           py::arg("two_words"),
           "(seed, stream, offset) of an n-value draw from the generator, which now holds the "
           "state after it.");
  m.def("cpu_isa_available", &cpu_isa_available);
  m.def("cpu_isa_selected", &cpu_isa_selected);
  m.def("cpu_isa_select", &cpu_isa_select, py::arg("name"));
  m.def("cpu_isa_env_warning", &cpu_isa_env_warning,
        "Non-empty when $FASTRAND_CPU_ISA names no CPU path (a typo; scalar is used).");
  {
    // A typo in FASTRAND_CPU_ISA selects the scalar path: say so once, at import (an error
    // where warnings are errors).
    const std::string w = cpu_isa_env_warning();
    if (!w.empty() && PyErr_WarnEx(PyExc_RuntimeWarning, w.c_str(), 1) != 0)
      throw py::error_already_set();
  }
  // the CUDA side: kernel sources, driver-API and nvcc-built backends (bindings_cuda.cpp)
  bind_cuda(m);
}

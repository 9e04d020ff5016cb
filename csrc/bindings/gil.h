// The GIL released around native work, for the binding files (bindings.cpp, bindings_cuda.cpp).
#pragma once

#include <pybind11/pybind11.h>

namespace fastrand {

// Runs f() with the GIL released and takes the GIL back by a plain call, not in a destructor
// (py::gil_scoped_release): while the interpreter shuts down, Python (3.13 and older) ends a
// daemon thread that takes the GIL back with pthread_exit, and its forced unwind through the
// destructor (noexcept) called std::terminate: a daemon thread drawing at exit aborted Python.
template <class F>
void without_gil(const F& f) {
  PyThreadState* st = PyEval_SaveThread();
  try {
    f();
  } catch (...) {
    PyEval_RestoreThread(st);
    throw;
  }
  PyEval_RestoreThread(st);
}

}  // namespace fastrand

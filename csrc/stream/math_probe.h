// Direct evaluation of the stream's float32 building blocks over ranges of raw inputs, so the
// device check can compare every radius word and every angle input between CPU and GPU.
#pragma once

#include "fastrand_stream.h"

namespace fastrand {

enum Probe : int { PROBE_RADIUS32 = 0, PROBE_ANGLE32 = 1 };

// Element i of a probe over inputs [first, first + count):
//   PROBE_RADIUS32: out[i] = radius32(first + i)                     (float)
//   PROBE_ANGLE32:  out[2i], out[2i+1] = sin, cos of w1 = (first + i) << 6   (float pairs;
//                   first + i runs over the 2^26 quadrant-and-angle inputs)
FR_HD void probe_eval(int which, float* out, uint64_t i, uint64_t first) {
  const uint32_t x = uint32_t(first + i);
  if (which == PROBE_RADIUS32) {
    out[i] = v1::radius32(x);
  } else {
    float s, c;
    v1::angle32(x << 6, s, c);
    out[2 * i] = s;
    out[2 * i + 1] = c;
  }
}

}  // namespace fastrand

// Plots for kvstash-sim replay: writes gnuplot data files and a script into a directory and, when
// gnuplot is on PATH, renders ttft_cdf.png (TTFT CDF per policy) and hit_ratio.png (hit ratio over
// time per policy). Without gnuplot the data and script stay in place and the returned note says
// so; that is not an error.
//
// Thread-safety: plain function; runs a child process.
#pragma once

#include <string>
#include <vector>

#include "kvstash/result.h"
#include "scheduler/simulator.h"

namespace kvstash::scheduler {

// Returns a one-line note for the user (what was written). INTERNAL when the directory or files
// cannot be written or gnuplot fails.
Result<std::string> WritePlots(const std::string& dir, const std::vector<SimResult>& runs);

}  // namespace kvstash::scheduler

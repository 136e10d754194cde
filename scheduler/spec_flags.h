// Command-line flags shared by kvstash-sim and kvstash-conductor: the ModelSpec constants, the
// profile file, and the SLO/admission settings. Values land in the structs passed in, which must
// outlive parsing.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "kvstash/result.h"
#include "scheduler/cost_model.h"
#include "scheduler/router.h"

namespace kvstash::scheduler {

struct CostFlags {
  ModelSpec spec;
  std::string profile;        // empty = analytic default
  std::string write_profile;  // empty = do not write
  uint32_t decode_max_batch = 128;
};

struct AdmissionFlags {
  std::string admission = "predicted";
  double ttft_slo_s = 30, tbt_slo_ms = 100;
};

void AddCostFlags(CLI::App* cmd, CostFlags& flags);
void AddAdmissionFlags(CLI::App* cmd, AdmissionFlags& flags);

// Loads (or derives) the profile, writes it when asked, and fits it.
Result<CostModel> BuildCostModel(const CostFlags& flags);
Result<RouterOptions> BuildRouterOptions(const AdmissionFlags& flags);

}  // namespace kvstash::scheduler

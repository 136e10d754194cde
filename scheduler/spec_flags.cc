#include "scheduler/spec_flags.h"

#include <fstream>

namespace kvstash::scheduler {

void AddCostFlags(CLI::App* cmd, CostFlags& f) {
  cmd->add_option("--profile", f.profile,
                  "cost profile file (format: scheduler/profile.h); default: analytic");
  cmd->add_option("--write-profile", f.write_profile, "write the profile in use to this file");
  cmd->add_option("--decode-max-batch", f.decode_max_batch, "sequences per decode batch")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  ModelSpec& s = f.spec;
  auto g = cmd->add_option_group("model", "model and hardware constants of the analytic profile");
  g->add_option("--layers", s.layers, "l")->capture_default_str();
  g->add_option("--hidden", s.hidden, "d")->capture_default_str();
  g->add_option("--attn-coeff", s.attn_coeff, "a")->capture_default_str();
  g->add_option("--linear-coeff", s.linear_coeff, "b")->capture_default_str();
  g->add_option("--gqa", s.gqa, "query heads per KV head")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  g->add_option("--elem-bytes", s.elem_bytes, "bytes per element")->capture_default_str();
  g->add_option("--params", s.params, "parameter count")->capture_default_str();
  g->add_option("--gpus", s.gpus, "GPUs per instance")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  g->add_option("--gpu-tflops", s.gpu_tflops, "peak TFLOPS per GPU")->capture_default_str();
  g->add_option("--mfu", s.mfu, "model FLOPs utilisation")->capture_default_str();
  g->add_option("--hbm-gbs", s.hbm_gbytes_s, "HBM GB/s per GPU")->capture_default_str();
  g->add_option("--mbu", s.mbu, "memory bandwidth utilisation in decode")->capture_default_str();
  g->add_option("--hbm-gib", s.hbm_gib_per_gpu, "HBM GiB per GPU")->capture_default_str();
  g->add_option("--h2d-gbs", s.h2d_gbytes_s, "host-to-device GB/s")->capture_default_str();
  g->add_option("--nic-gbps", s.nic_gbits_s, "NIC Gbit/s")->capture_default_str();
  g->add_option("--block-tokens", s.block_tokens, "tokens per block")->capture_default_str();
}

void AddAdmissionFlags(CLI::App* cmd, AdmissionFlags& f) {
  cmd->add_option("--admission", f.admission, "SLO admission: off|current|predicted")
      ->capture_default_str();
  cmd->add_option("--ttft-slo-s", f.ttft_slo_s, "TTFT SLO, seconds")->capture_default_str();
  cmd->add_option("--tbt-slo-ms", f.tbt_slo_ms, "TBT SLO, milliseconds")->capture_default_str();
}

Result<CostModel> BuildCostModel(const CostFlags& f) {
  const ModelSpec& s = f.spec;
  if (s.layers == 0 || s.hidden == 0 || s.elem_bytes == 0 || s.block_tokens == 0 ||
      !(s.mfu > 0 && s.mfu <= 1) || !(s.mbu > 0 && s.mbu <= 1) || !(s.gpu_tflops > 0) ||
      !(s.hbm_gbytes_s > 0) || !(s.params > 0)) {
    return InvalidArgument("model constants must be positive, with 0 < mfu, mbu <= 1");
  }
  Profile profile = DefaultProfile(s);
  if (!f.profile.empty()) {
    KVSTASH_ASSIGN_OR_RETURN(profile, LoadProfile(f.profile));
  }
  if (!f.write_profile.empty()) {
    std::ofstream out(f.write_profile);
    out << FormatProfile(profile);
    if (!out) return Internal("cannot write " + f.write_profile);
  }
  return CostModel::Fit(profile, s, f.decode_max_batch);
}

Result<RouterOptions> BuildRouterOptions(const AdmissionFlags& f) {
  RouterOptions ro;
  KVSTASH_ASSIGN_OR_RETURN(ro.admission, ParseAdmission(f.admission));
  if (!(f.ttft_slo_s > 0) || !(f.tbt_slo_ms > 0)) return InvalidArgument("SLOs must be positive");
  ro.ttft_slo_s = f.ttft_slo_s;
  ro.tbt_slo_s = f.tbt_slo_ms / 1000;
  return ro;
}

}  // namespace kvstash::scheduler

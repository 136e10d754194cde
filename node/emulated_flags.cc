#include "node/emulated_flags.h"

namespace kvstash::node {

void AddEmulatedFlags(CLI::App* cmd, EmulatedOptions& o) {
  scheduler::ModelSpec& h = o.hardware;
  CLI::Option_group* g = cmd->add_option_group(
      "emulated", "--engine emulated: the instance's hardware (the model comes from --model's config.json)");
  g->add_option("--time-scale", o.time_scale, "predicted step seconds x this (0: as fast as possible)")
      ->check(CLI::Range(0.0, 1e6));
  g->add_option("--kv-bytes-scale", o.kv_bytes_scale,
                "KV bytes per token x this (0 < s <= 1): a model whose true KV is more than the machine carries")
      ->check(CLI::Range(1e-6, 1.0));
  g->add_option("--profile", o.profile, "measured cost profile (scheduler/profile.h format); default analytic");
  g->add_option("--decode-max-batch", o.decode_max_batch, "sequences per decode batch in the cost model")
      ->check(CLI::Range(1, 100000));
  g->add_option("--gpus", h.gpus, "GPUs per instance")->check(CLI::Range(1, 1024));
  g->add_option("--gpu-tflops", h.gpu_tflops, "peak dense TFLOPS per GPU")->check(CLI::PositiveNumber);
  g->add_option("--mfu", h.mfu, "model FLOPs utilisation")->check(CLI::Range(1e-6, 1.0));
  g->add_option("--hbm-gbs", h.hbm_gbytes_s, "HBM GB/s per GPU")->check(CLI::PositiveNumber);
  g->add_option("--mbu", h.mbu, "memory bandwidth utilisation in decode")->check(CLI::Range(1e-6, 1.0));
  g->add_option("--hbm-gib", h.hbm_gib_per_gpu, "HBM GiB per GPU")->check(CLI::PositiveNumber);
  g->add_option("--nic-gbps", h.nic_gbits_s, "NIC Gbit/s")->check(CLI::PositiveNumber);
}

}  // namespace kvstash::node

#include "server/server_metrics.h"

#include <cctype>

namespace kvstash::server {
namespace {

std::string ResultLabel(const Status& status) {
  std::string label(StatusCodeName(status.code()));
  for (char& c : label) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return label;
}

}  // namespace

ServerMetrics::ServerMetrics(metrics::Registry& r, const tiers::TierStats& stats, std::string_view version)
    : stats_(stats),
      ops_(r.AddCounter("kvstash_ops_total", "RPCs served, by op and result (ok or the gRPC status code).",
                        {"op", "result"})),
      op_duration_(r.AddHistogram("kvstash_op_duration_seconds", "RPC latency inside the daemon, by op.", {"op"},
                                  metrics::DefaultLatencyBuckets())),
      lookup_blocks_(r.AddCounter("kvstash_lookup_blocks_total",
                                  "Blocks asked for by Lookup: in the present prefix (hit) or not (miss).",
                                  {"result"})),
      get_blocks_(r.AddCounter("kvstash_get_blocks_total", "Blocks asked for by Get: found (hit) or not (miss).",
                               {"result"})),
      put_blocks_(r.AddCounter("kvstash_put_blocks_total",
                               "Blocks offered by puts: stored, or deduplicated because the key was present.",
                               {"result"})),
      put_bytes_(r.AddCounter("kvstash_put_bytes_total",
                              "Block bytes committed, by path: inside RPCs (inline), written one-sided (ucx) or sent two-sided (ucx_two_sided).",
                              {"path"})),
      put_bytes_inline_(put_bytes_.WithLabels({"inline"})),
      put_bytes_one_sided_(put_bytes_.WithLabels({"ucx"})),
      put_bytes_two_sided_(put_bytes_.WithLabels({"ucx_two_sided"})),
      put_advice_(r.AddCounter("kvstash_put_advice_total",
                               "Committed blocks that came with reuse advice from the engine, by advice.",
                               {"advice"})),
      put_advice_likely_(put_advice_.WithLabels({ReuseAdviceName(ReuseAdvice::kLikely)})),
      put_advice_unlikely_(put_advice_.WithLabels({ReuseAdviceName(ReuseAdvice::kUnlikely)})),
      lookup_hits_(lookup_blocks_.WithLabels({"hit"})),
      lookup_misses_(lookup_blocks_.WithLabels({"miss"})),
      get_hits_(get_blocks_.WithLabels({"hit"})),
      get_misses_(get_blocks_.WithLabels({"miss"})),
      puts_stored_(put_blocks_.WithLabels({"stored"})),
      puts_deduplicated_(put_blocks_.WithLabels({"exists"})),
      capacity_(r.AddGauge("kvstash_tier_capacity_bytes", "Capacity of each tier.", {"tier"})),
      used_(r.AddGauge("kvstash_tier_used_bytes", "Bytes allocated in each tier (committed and reserved).",
                       {"tier"})),
      reserved_(r.AddGauge("kvstash_tier_reserved_bytes", "Bytes held by open put reservations.", {"tier"})),
      blocks_(r.AddGauge("kvstash_tier_blocks", "Committed blocks in each tier.", {"tier"})),
      active_leases_(r.AddGauge("kvstash_active_leases", "Blocks whose read lease is running.").WithLabels({})),
      pinned_blocks_(r.AddGauge("kvstash_pinned_blocks", "Pinned blocks (never evicted).").WithLabels({})),
      reservations_open_(r.AddGauge("kvstash_reservations_open", "Open put reservations.").WithLabels({})),
      regions_held_for_late_writes_(
          r.AddGauge("kvstash_regions_held_for_late_writes",
                     "Regions of aborted or expired put reservations kept out of use because a UCX receive "
                     "may still write into them.")
              .WithLabels({})),
      evictions_(r.AddCounter("kvstash_evictions_total", "Blocks evicted, by tier and reason.", {"tier", "reason"})),
      evicted_bytes_(r.AddCounter("kvstash_evicted_bytes_total", "Bytes evicted, by tier.", {"tier"})),
      reservations_expired_(r.AddCounter("kvstash_reservations_expired_total",
                                         "Put reservations reclaimed after their deadline.").WithLabels({})),
      checksum_mismatches_(r.AddCounter("kvstash_checksum_mismatches_total",
                                        "Commits refused because the bytes did not match the checksum.")
                               .WithLabels({})),
      demotions_(r.AddCounter("kvstash_demotions_total",
                              "DRAM eviction victims offered to the SSD tier, by outcome.", {"result"})),
      promotions_(r.AddCounter("kvstash_promotions_total", "SSD hits staged back into DRAM.").WithLabels({})),
      hbm_placements_(r.AddCounter("kvstash_hbm_placements_total",
                                   "Committed blocks by where they landed with an HBM tier: hbm, or dram when HBM "
                                   "could not take them.",
                                   {"tier"})),
      hbm_demotions_(r.AddCounter("kvstash_hbm_demotions_total",
                                  "HBM eviction victims by outcome: written to DRAM, already in DRAM, offered to the "
                                  "SSD, dropped.",
                                  {"result"})),
      hbm_promotions_(r.AddCounter("kvstash_hbm_promotions_total",
                                   "HBM blocks copied into DRAM for one-sided readers, by result.", {"result"})),
      hbm_direct_leases_(r.AddCounter("kvstash_hbm_direct_leases_total",
                                      "HBM blocks leased in place for device readers: sent from GPU memory, "
                                      "no DRAM copy (docs/GPU.md).")
                             .WithLabels({})),
      ssd_kept_for_owners_(r.AddCounter("kvstash_ssd_blocks_kept_for_owners_total",
                                        "SSD blocks a reclaim carried into the reclaimed segment because their "
                                        "tenant was within its SSD quota (rewritten once per lap of the log).")
                               .WithLabels({})),
      ssd_checksum_drops_(r.AddCounter("kvstash_ssd_checksum_failures_total",
                                       "SSD reads whose bytes failed their checksum (block dropped, served as a miss).")
                              .WithLabels({})),
      ssd_index_errors_(r.AddCounter("kvstash_ssd_index_errors_total",
                                     "Writes the SSD tier's RocksDB index refused (a full disk, an I/O error).")
                            .WithLabels({})),
      ssd_index_recoveries_(r.AddCounter("kvstash_ssd_index_recoveries_total",
                                         "Times the SSD tier's index took writes again after refusing them.")
                                .WithLabels({})),
      ssd_index_writable_(r.AddGauge("kvstash_ssd_index_writable",
                                     "1 while the SSD tier's index takes writes (and without an SSD tier), 0 while "
                                     "it refuses them.")
                              .WithLabels({})),
      ssd_index_quarantined_(r.AddGauge("kvstash_ssd_index_quarantined",
                                        "1 when the SSD tier found its index corrupt at start, moved it aside and "
                                        "started empty.")
                                 .WithLabels({})),
      corrupt_blocks_(r.AddCounter("kvstash_corrupt_blocks_total",
                                   "DRAM blocks whose bytes failed their checksum on the daemon before an inline send "
                                   "(not sent; two-sided ones count as kvstash_data_plane_refused_total{reason=\"corrupt\"}).")
                          .WithLabels({})),
      refused_(r.AddCounter("kvstash_data_plane_refused_total",
                            "UCX data-plane messages refused, by reason (docs/DATA_PLANE.md).", {"reason"})) {
  for (size_t i = 0; i < transfer::kRefusalKinds; ++i) {
    (void)refused_.WithLabels({transfer::RefusalName(static_cast<transfer::Refusal>(i))});  // every reason, at 0
  }
  r.AddGauge("kvstash_build_info", "Build information; always 1.", {"version"}).WithLabels({version}).Set(1);
  r.AddCollector([this] { Collect(); });
}

void ServerMetrics::RecordOp(std::string_view op, const Status& status, double seconds) {
  ops_.WithLabels({op, ResultLabel(status)}).Inc();
  op_duration_.WithLabels({op}).Observe(seconds);
}

void ServerMetrics::RecordRefusal(std::string_view op, const Status& status) {
  ops_.WithLabels({op, ResultLabel(status)}).Inc();
}

void ServerMetrics::RecordLookupBlocks(uint64_t hits, uint64_t misses) {
  lookup_hits_.Inc(static_cast<double>(hits));
  lookup_misses_.Inc(static_cast<double>(misses));
}
void ServerMetrics::RecordGetBlocks(uint64_t hits, uint64_t misses) {
  get_hits_.Inc(static_cast<double>(hits));
  get_misses_.Inc(static_cast<double>(misses));
}
void ServerMetrics::RecordPuts(uint64_t stored, uint64_t deduplicated) {
  puts_stored_.Inc(static_cast<double>(stored));
  puts_deduplicated_.Inc(static_cast<double>(deduplicated));
}

void ServerMetrics::RecordPutBytes(uint64_t inline_bytes, uint64_t one_sided_bytes) {
  put_bytes_inline_.Inc(static_cast<double>(inline_bytes));
  put_bytes_one_sided_.Inc(static_cast<double>(one_sided_bytes));
}
void ServerMetrics::RecordAdvice(ReuseAdvice advice, uint64_t blocks) {
  (advice == ReuseAdvice::kLikely ? put_advice_likely_ : put_advice_unlikely_).Inc(static_cast<double>(blocks));
}
void ServerMetrics::RecordPutBytesTwoSided(uint64_t bytes) { put_bytes_two_sided_.Inc(static_cast<double>(bytes)); }
uint64_t ServerMetrics::put_bytes_two_sided() const { return static_cast<uint64_t>(put_bytes_two_sided_.Value()); }
void ServerMetrics::RecordCorruptBlock() { corrupt_blocks_.Inc(); }
uint64_t ServerMetrics::corrupt_blocks() const { return static_cast<uint64_t>(corrupt_blocks_.Value()); }

void ServerMetrics::WatchDataPlane(const transfer::TransferServer* transfer) {
  MutexLock lock(collect_mu_);
  transfer_ = transfer;
}

uint64_t ServerMetrics::put_bytes_inline() const { return static_cast<uint64_t>(put_bytes_inline_.Value()); }
uint64_t ServerMetrics::put_bytes_one_sided() const { return static_cast<uint64_t>(put_bytes_one_sided_.Value()); }

uint64_t ServerMetrics::lookup_hit_blocks() const { return static_cast<uint64_t>(lookup_hits_.Value()); }
uint64_t ServerMetrics::lookup_miss_blocks() const { return static_cast<uint64_t>(lookup_misses_.Value()); }
uint64_t ServerMetrics::get_hits() const { return static_cast<uint64_t>(get_hits_.Value()); }
uint64_t ServerMetrics::get_misses() const { return static_cast<uint64_t>(get_misses_.Value()); }
uint64_t ServerMetrics::puts_stored() const { return static_cast<uint64_t>(puts_stored_.Value()); }
uint64_t ServerMetrics::puts_deduplicated() const { return static_cast<uint64_t>(puts_deduplicated_.Value()); }

void ServerMetrics::Collect() {
  const tiers::TierUsage total = stats_.Usage();
  for (const tiers::TierUsageEntry& entry : stats_.UsageByTier()) {
    const std::string name(tiers::TierName(entry.kind));
    capacity_.WithLabels({name}).Set(static_cast<double>(entry.usage.capacity_bytes));
    used_.WithLabels({name}).Set(static_cast<double>(entry.usage.used_bytes));
    reserved_.WithLabels({name}).Set(static_cast<double>(entry.usage.reserved_bytes));
    blocks_.WithLabels({name}).Set(static_cast<double>(entry.usage.blocks));
  }
  active_leases_.Set(static_cast<double>(total.leased_blocks));
  pinned_blocks_.Set(static_cast<double>(total.pinned_blocks));
  reservations_open_.Set(static_cast<double>(total.reservations));

  // Tier counters are cumulative; publish their growth since the last scrape.
  MutexLock lock(collect_mu_);
  const std::string dram(tiers::TierName(tiers::TierKind::kDram));
  const tiers::TierCounters now = stats_.Counters();
  auto delta = [](uint64_t now_v, uint64_t then_v) { return static_cast<double>(now_v - then_v); };
  evictions_.WithLabels({dram, "capacity"}).Inc(delta(now.evicted_capacity, last_counters_.evicted_capacity));
  evictions_.WithLabels({dram, "fragmentation"})
      .Inc(delta(now.evicted_fragmentation, last_counters_.evicted_fragmentation));
  evicted_bytes_.WithLabels({dram}).Inc(delta(now.evicted_bytes, last_counters_.evicted_bytes));
  reservations_expired_.Inc(delta(now.reservations_expired, last_counters_.reservations_expired));
  checksum_mismatches_.Inc(delta(now.checksum_mismatches, last_counters_.checksum_mismatches));
  regions_held_for_late_writes_.Set(static_cast<double>(now.regions_held_for_late_writes));
  last_counters_ = now;
  const tiers::TierManagerCounters m = stats_.ManagerCounters();
  demotions_.WithLabels({"written"}).Inc(delta(m.demoted, last_manager_.demoted));
  demotions_.WithLabels({"already_on_ssd"}).Inc(delta(m.demotions_already_on_ssd, last_manager_.demotions_already_on_ssd));
  demotions_.WithLabels({"dropped_queue_full"}).Inc(delta(m.demotions_dropped_full, last_manager_.demotions_dropped_full));
  demotions_.WithLabels({"failed"}).Inc(delta(m.demotions_failed, last_manager_.demotions_failed));
  promotions_.Inc(delta(m.promotions, last_manager_.promotions));
  demotions_.WithLabels({"skipped_in_hbm"})
      .Inc(delta(m.demotions_skipped_in_hbm, last_manager_.demotions_skipped_in_hbm));
  if (stats_.has_hbm()) {
    const std::string hbm(tiers::TierName(tiers::TierKind::kHbm));
    const tiers::TierCounters h = stats_.HbmCounters();
    evictions_.WithLabels({hbm, "capacity"}).Inc(delta(h.evicted_capacity, last_hbm_counters_.evicted_capacity));
    evictions_.WithLabels({hbm, "fragmentation"})
        .Inc(delta(h.evicted_fragmentation, last_hbm_counters_.evicted_fragmentation));
    evicted_bytes_.WithLabels({hbm}).Inc(delta(h.evicted_bytes, last_hbm_counters_.evicted_bytes));
    checksum_mismatches_.Inc(delta(h.checksum_mismatches, last_hbm_counters_.checksum_mismatches));
    last_hbm_counters_ = h;
    hbm_placements_.WithLabels({"hbm"}).Inc(delta(m.hbm_placed, last_manager_.hbm_placed));
    hbm_placements_.WithLabels({"dram"}).Inc(delta(m.hbm_place_fallbacks, last_manager_.hbm_place_fallbacks));
    hbm_demotions_.WithLabels({"written"}).Inc(delta(m.hbm_demoted, last_manager_.hbm_demoted));
    hbm_demotions_.WithLabels({"already_in_dram"})
        .Inc(delta(m.hbm_demotions_in_dram, last_manager_.hbm_demotions_in_dram));
    hbm_demotions_.WithLabels({"to_ssd"}).Inc(delta(m.hbm_demotions_to_ssd, last_manager_.hbm_demotions_to_ssd));
    hbm_demotions_.WithLabels({"dropped"}).Inc(delta(m.hbm_demotions_dropped, last_manager_.hbm_demotions_dropped));
    hbm_promotions_.WithLabels({"ok"}).Inc(delta(m.hbm_promotions, last_manager_.hbm_promotions));
    hbm_promotions_.WithLabels({"failed"}).Inc(delta(m.hbm_promotions_failed, last_manager_.hbm_promotions_failed));
    hbm_direct_leases_.Inc(delta(m.hbm_direct_finds, last_manager_.hbm_direct_finds));
  }
  ssd_checksum_drops_.Inc(delta(m.ssd.checksum_failures, last_manager_.ssd.checksum_failures));
  ssd_kept_for_owners_.Inc(delta(m.ssd.blocks_kept_for_owners, last_manager_.ssd.blocks_kept_for_owners));
  ssd_index_errors_.Inc(delta(m.ssd.index_errors, last_manager_.ssd.index_errors));
  ssd_index_recoveries_.Inc(delta(m.ssd.index_recoveries, last_manager_.ssd.index_recoveries));
  ssd_index_writable_.Set(m.ssd.index_writable ? 1 : 0);
  ssd_index_quarantined_.Set(m.ssd.index_quarantined ? 1 : 0);
  last_manager_ = m;
  if (transfer_ != nullptr) {
    const transfer::TwoSidedCounters c = transfer_->counters();
    for (size_t i = 0; i < transfer::kRefusalKinds; ++i) {
      refused_.WithLabels({transfer::RefusalName(static_cast<transfer::Refusal>(i))})
          .Inc(delta(c.refused[i], last_refused_[i]));
      last_refused_[i] = c.refused[i];
    }
  }
}

}  // namespace kvstash::server

// PowerFaults: fault injection under the SSD tier's two kinds of files, for power-loss tests
// (issue 17). It wraps both seams the tier writes through:
//  * the segment files' IoEngine (tiers/io_engine.h): SsdTierOptions::engine_factory;
//  * RocksDB's file system (a rocksdb::FileSystemWrapper behind an Env): SsdTierOptions::index_env.
//
// Every write and every sync through either seam is one numbered step (steps() counts them). A
// test can
//  * cut the power at a chosen step (PowerOffAtStep): that step and every later write, sync, file
//    creation, rename or deletion fail with EIO — the process is as good as dead;
//  * fail one chosen step only (FailStep: EIO for that write or sync, later ones go on);
//  * cut one chosen segment write short (ShortWriteAtStep: half the bytes are written and the op
//    reports that count);
//  * then lose what a power cut loses (LoseUnsyncedSegmentWrites while the tier is still open,
//    LoseUnsyncedIndexData after it is closed): every segment write since its file's last sync
//    is undone (the bytes before it are put back), every RocksDB file is cut back to the length
//    it had at its last sync, and a file never synced is removed. PowerOn() ends the outage.
// What it does not model: a device that persists part of the unsynced writes, or reorders them;
// directory entries (a renamed or created file is taken as it is named now).
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "kvstash/result.h"
#include "tiers/io_engine.h"

namespace rocksdb {
class Env;
}

namespace kvstash::tiers {

class PowerFaults {
 public:
  PowerFaults();
  ~PowerFaults();
  PowerFaults(const PowerFaults&) = delete;
  PowerFaults& operator=(const PowerFaults&) = delete;

  // For SsdTierOptions::engine_factory: the io_uring engine (else the thread pool) wrapped.
  std::function<Result<std::unique_ptr<IoEngine>>(const IoEngineOptions&)> EngineFactory();
  // For SsdTierOptions::index_env; lives as long as this object.
  rocksdb::Env* IndexEnv();

  uint64_t steps() const;
  void PowerOffAtStep(uint64_t step);
  void FailStep(uint64_t step);
  void ShortWriteAtStep(uint64_t step);
  bool power_off() const;
  void PowerOffNow();

  // Restores the bytes under every segment write not yet synced. Call while the tier is open
  // (the engine's files are open) and the power is off.
  Status LoseUnsyncedSegmentWrites();
  // Cuts every RocksDB file back to its synced length (removes those never synced). Call after
  // the tier is closed.
  Status LoseUnsyncedIndexData();
  void PowerOn();

  struct State;

 private:
  std::shared_ptr<State> state_;
  // Owned here, not by State: the env holds the filesystem wrapper, which holds State, so State
  // owning the env would be a cycle that never frees (LeakSanitizer reported it).
  std::unique_ptr<rocksdb::Env> env_;
};

}  // namespace kvstash::tiers

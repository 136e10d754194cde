// PowerFaults (contract in tiers/fault_injection.h).
#include "tiers/fault_injection.h"

#include <fcntl.h>
#include <unistd.h>

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <rocksdb/io_status.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace kvstash::tiers {

struct PowerFaults::State {
  enum class Fault { kNone, kFail, kShort };

  std::mutex mu;
  uint64_t steps = 0;
  uint64_t off_at = UINT64_MAX;
  bool off = false;
  std::set<uint64_t> fail_steps;
  std::set<uint64_t> short_steps;

  struct Undo {
    int fd;
    uint64_t offset;
    uint64_t len;
    std::byte* old;  // 4 KiB aligned, freed by the destructor
  };
  std::vector<Undo> undo;  // segment writes not yet synced, oldest first

  struct File {
    uint64_t size = 0;
    uint64_t synced = 0;
    bool ever_synced = false;
  };
  std::map<std::string, File> files;  // RocksDB files written since this object was made

  ~State() {
    for (Undo& u : undo) std::free(u.old);
  }

  // One write or sync: what to do with it.
  Fault Step() {
    std::lock_guard lock(mu);
    if (off) return Fault::kFail;
    ++steps;
    if (steps >= off_at) {
      off = true;
      return Fault::kFail;
    }
    if (fail_steps.contains(steps)) return Fault::kFail;
    if (short_steps.contains(steps)) return Fault::kShort;
    return Fault::kNone;
  }
  bool Off() {
    std::lock_guard lock(mu);
    return off;
  }
};

namespace {

using State = PowerFaults::State;

rocksdb::IOStatus Injected() { return rocksdb::IOStatus::IOError("injected fault (power-loss test)"); }

// Saves the bytes a segment write is about to replace. False when they cannot be read.
bool SaveUndo(State& st, int fd, uint64_t offset, uint64_t len) {
  auto* old = static_cast<std::byte*>(std::aligned_alloc(4096, len));
  if (old == nullptr) return false;
  const ssize_t n = ::pread(fd, old, len, static_cast<off_t>(offset));
  if (n < 0) {
    std::free(old);
    return false;
  }
  if (static_cast<uint64_t>(n) < len) std::memset(old + n, 0, len - static_cast<uint64_t>(n));
  std::lock_guard lock(st.mu);
  st.undo.push_back({fd, offset, len, old});
  return true;
}

class FaultEngine final : public IoEngine {
 public:
  FaultEngine(std::unique_ptr<IoEngine> inner, std::vector<int> fds, std::shared_ptr<State> state)
      : inner_(std::move(inner)), fds_(std::move(fds)), state_(std::move(state)) {}

  std::string_view name() const override { return "power-faults"; }
  bool buffers_registered() const override { return inner_->buffers_registered(); }

  Status Run(std::span<IoOp> ops) override {
    std::vector<IoOp> pass;
    std::vector<size_t> pass_of;
    for (size_t i = 0; i < ops.size(); ++i) {
      IoOp& op = ops[i];
      if (!op.write) {
        pass.push_back(op);
        pass_of.push_back(i);
        continue;
      }
      const int fd = op.file < fds_.size() ? fds_[op.file] : -1;
      switch (state_->Step()) {
        case State::Fault::kFail:
          op.result = -EIO;
          break;
        case State::Fault::kShort: {
          if (fd < 0 || !SaveUndo(*state_, fd, op.offset, op.len)) {
            op.result = -EIO;
            break;
          }
          const uint32_t part = op.len / 2 / 4096 * 4096;
          const ssize_t n = part == 0 ? 0 : ::pwrite(fd, op.buf, part, static_cast<off_t>(op.offset));
          op.result = n < 0 ? -errno : n;
          break;
        }
        case State::Fault::kNone:
          if (fd < 0 || !SaveUndo(*state_, fd, op.offset, op.len)) {
            op.result = -EIO;
            break;
          }
          pass.push_back(op);
          pass_of.push_back(i);
          break;
      }
    }
    KVSTASH_RETURN_IF_ERROR(inner_->Run(pass));
    for (size_t j = 0; j < pass.size(); ++j) ops[pass_of[j]].result = pass[j].result;
    return Status::Ok();
  }

  Status Sync(std::span<const int> fds) override {
    if (state_->Step() != State::Fault::kNone) return Internal("fdatasync failed: injected fault (power-loss test)");
    KVSTASH_RETURN_IF_ERROR(inner_->Sync(fds));
    std::lock_guard lock(state_->mu);
    std::vector<State::Undo> kept;
    for (State::Undo& u : state_->undo) {
      if (std::find(fds.begin(), fds.end(), u.fd) != fds.end()) {
        std::free(u.old);
      } else {
        kept.push_back(u);
      }
    }
    state_->undo = std::move(kept);
    return Status::Ok();
  }

 private:
  std::unique_ptr<IoEngine> inner_;
  std::vector<int> fds_;
  std::shared_ptr<State> state_;
};

class FaultWritableFile final : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  FaultWritableFile(std::unique_ptr<rocksdb::FSWritableFile> target, std::string name, std::shared_ptr<State> state)
      : rocksdb::FSWritableFileOwnerWrapper(std::move(target)), name_(std::move(name)), state_(std::move(state)) {}

  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
    if (state_->Step() != State::Fault::kNone) return Injected();
    rocksdb::IOStatus s = target()->Append(data, options, dbg);
    if (s.ok()) Grow(data.size(), std::nullopt);
    return s;
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           const rocksdb::DataVerificationInfo& info, rocksdb::IODebugContext* dbg) override {
    if (state_->Step() != State::Fault::kNone) return Injected();
    rocksdb::IOStatus s = target()->Append(data, options, info, dbg);
    if (s.ok()) Grow(data.size(), std::nullopt);
    return s;
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset, const rocksdb::IOOptions& options,
                                     rocksdb::IODebugContext* dbg) override {
    if (state_->Step() != State::Fault::kNone) return Injected();
    rocksdb::IOStatus s = target()->PositionedAppend(data, offset, options, dbg);
    if (s.ok()) Grow(data.size(), offset);
    return s;
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset, const rocksdb::IOOptions& options,
                                     const rocksdb::DataVerificationInfo& info, rocksdb::IODebugContext* dbg) override {
    if (state_->Step() != State::Fault::kNone) return Injected();
    rocksdb::IOStatus s = target()->PositionedAppend(data, offset, options, info, dbg);
    if (s.ok()) Grow(data.size(), offset);
    return s;
  }
  rocksdb::IOStatus Truncate(uint64_t size, const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
    if (state_->Off()) return Injected();
    rocksdb::IOStatus s = target()->Truncate(size, options, dbg);
    if (s.ok()) {
      std::lock_guard lock(state_->mu);
      State::File& f = state_->files[name_];
      f.size = size;
      f.synced = std::min(f.synced, size);
    }
    return s;
  }
  rocksdb::IOStatus Sync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
    if (state_->Step() != State::Fault::kNone) return Injected();
    rocksdb::IOStatus s = target()->Sync(options, dbg);
    if (s.ok()) Synced();
    return s;
  }
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
    if (state_->Step() != State::Fault::kNone) return Injected();
    rocksdb::IOStatus s = target()->Fsync(options, dbg);
    if (s.ok()) Synced();
    return s;
  }
  // Not a durability point: RangeSync starts write-back only.

 private:
  void Grow(uint64_t bytes, std::optional<uint64_t> at) {
    std::lock_guard lock(state_->mu);
    State::File& f = state_->files[name_];
    f.size = at ? std::max(f.size, *at + bytes) : f.size + bytes;
  }
  void Synced() {
    std::lock_guard lock(state_->mu);
    State::File& f = state_->files[name_];
    f.synced = f.size;
    f.ever_synced = true;
  }

  std::string name_;
  std::shared_ptr<State> state_;
};

class FaultFileSystem final : public rocksdb::FileSystemWrapper {
 public:
  FaultFileSystem(const std::shared_ptr<rocksdb::FileSystem>& base, std::shared_ptr<State> state)
      : rocksdb::FileSystemWrapper(base), state_(std::move(state)) {}

  const char* Name() const override { return "KvstashPowerFaults"; }

  rocksdb::IOStatus NewWritableFile(const std::string& fname, const rocksdb::FileOptions& opts,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override {
    if (state_->Off()) return Injected();
    std::unique_ptr<rocksdb::FSWritableFile> file;
    rocksdb::IOStatus s = target()->NewWritableFile(fname, opts, &file, dbg);
    if (!s.ok()) return s;
    {
      std::lock_guard lock(state_->mu);
      state_->files[fname] = State::File{};  // created (or truncated): nothing of it is durable yet
    }
    *result = std::make_unique<FaultWritableFile>(std::move(file), fname, state_);
    return s;
  }
  rocksdb::IOStatus ReopenWritableFile(const std::string& fname, const rocksdb::FileOptions& opts,
                                       std::unique_ptr<rocksdb::FSWritableFile>* result,
                                       rocksdb::IODebugContext* dbg) override {
    if (state_->Off()) return Injected();
    std::unique_ptr<rocksdb::FSWritableFile> file;
    rocksdb::IOStatus s = target()->ReopenWritableFile(fname, opts, &file, dbg);
    if (!s.ok()) return s;
    {
      std::error_code ec;
      const uint64_t size = std::filesystem::file_size(fname, ec);
      std::lock_guard lock(state_->mu);
      if (!state_->files.contains(fname)) state_->files[fname] = State::File{ec ? 0 : size, ec ? 0 : size, true};
    }
    *result = std::make_unique<FaultWritableFile>(std::move(file), fname, state_);
    return s;
  }
  rocksdb::IOStatus ReuseWritableFile(const std::string& fname, const std::string& old_fname,
                                      const rocksdb::FileOptions& opts, std::unique_ptr<rocksdb::FSWritableFile>* result,
                                      rocksdb::IODebugContext* dbg) override {
    if (state_->Off()) return Injected();
    std::unique_ptr<rocksdb::FSWritableFile> file;
    rocksdb::IOStatus s = target()->ReuseWritableFile(fname, old_fname, opts, &file, dbg);
    if (!s.ok()) return s;
    {
      std::lock_guard lock(state_->mu);
      state_->files.erase(old_fname);
      state_->files[fname] = State::File{};
    }
    *result = std::make_unique<FaultWritableFile>(std::move(file), fname, state_);
    return s;
  }
  rocksdb::IOStatus RenameFile(const std::string& src, const std::string& dst, const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override {
    if (state_->Off()) return Injected();
    rocksdb::IOStatus s = target()->RenameFile(src, dst, options, dbg);
    if (s.ok()) {
      std::lock_guard lock(state_->mu);
      auto it = state_->files.find(src);
      if (it != state_->files.end()) {
        state_->files[dst] = it->second;
        state_->files.erase(src);
      } else {
        state_->files.erase(dst);  // an older file that was durable keeps its name's new content
      }
    }
    return s;
  }
  rocksdb::IOStatus DeleteFile(const std::string& fname, const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override {
    if (state_->Off()) return Injected();
    rocksdb::IOStatus s = target()->DeleteFile(fname, options, dbg);
    if (s.ok()) {
      std::lock_guard lock(state_->mu);
      state_->files.erase(fname);
    }
    return s;
  }

 private:
  std::shared_ptr<State> state_;
};

}  // namespace

PowerFaults::PowerFaults() : state_(std::make_shared<State>()) {
  auto fs = std::make_shared<FaultFileSystem>(rocksdb::FileSystem::Default(), state_);
  env_ = rocksdb::NewCompositeEnv(fs);
}

PowerFaults::~PowerFaults() = default;

std::function<Result<std::unique_ptr<IoEngine>>(const IoEngineOptions&)> PowerFaults::EngineFactory() {
  std::shared_ptr<State> state = state_;
  return [state](const IoEngineOptions& eo) -> Result<std::unique_ptr<IoEngine>> {
    Result<std::unique_ptr<IoEngine>> inner = MakeUringEngine(eo);
    if (!inner.ok()) inner = MakeThreadPoolEngine(eo);
    KVSTASH_RETURN_IF_ERROR(inner.status());
    return std::unique_ptr<IoEngine>(std::make_unique<FaultEngine>(std::move(inner).value(), eo.fds, state));
  };
}

rocksdb::Env* PowerFaults::IndexEnv() { return env_.get(); }

uint64_t PowerFaults::steps() const {
  std::lock_guard lock(state_->mu);
  return state_->steps;
}

void PowerFaults::PowerOffAtStep(uint64_t step) {
  std::lock_guard lock(state_->mu);
  state_->off_at = step;
}

void PowerFaults::FailStep(uint64_t step) {
  std::lock_guard lock(state_->mu);
  state_->fail_steps.insert(step);
}

void PowerFaults::ShortWriteAtStep(uint64_t step) {
  std::lock_guard lock(state_->mu);
  state_->short_steps.insert(step);
}

bool PowerFaults::power_off() const { return state_->Off(); }

void PowerFaults::PowerOffNow() {
  std::lock_guard lock(state_->mu);
  state_->off = true;
}

Status PowerFaults::LoseUnsyncedSegmentWrites() {
  std::lock_guard lock(state_->mu);
  for (auto it = state_->undo.rbegin(); it != state_->undo.rend(); ++it) {
    const ssize_t n = ::pwrite(it->fd, it->old, it->len, static_cast<off_t>(it->offset));
    if (n != static_cast<ssize_t>(it->len)) {
      return Internal(std::string("cannot undo a segment write: ") + (n < 0 ? std::strerror(errno) : "short"));
    }
  }
  for (State::Undo& u : state_->undo) std::free(u.old);
  state_->undo.clear();
  return Status::Ok();
}

Status PowerFaults::LoseUnsyncedIndexData() {
  std::lock_guard lock(state_->mu);
  for (const auto& [name, f] : state_->files) {
    std::error_code ec;
    if (!std::filesystem::exists(name, ec)) continue;
    if (!f.ever_synced) {
      std::filesystem::remove(name, ec);
    } else {
      std::filesystem::resize_file(name, f.synced, ec);
    }
    if (ec) return Internal("cannot cut " + name + " back to its synced length: " + ec.message());
  }
  state_->files.clear();
  return Status::Ok();
}

void PowerFaults::PowerOn() {
  std::lock_guard lock(state_->mu);
  state_->off = false;
  state_->off_at = UINT64_MAX;
  state_->fail_steps.clear();
  state_->short_steps.clear();
}

}  // namespace kvstash::tiers

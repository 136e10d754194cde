// Output helpers shared by the commands: aligned tables and "label  value" lists for humans, JSON
// for machines, a progress bar on stderr, and number formatting. Main thread only.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kvstash::cli {

// Columns separated by two spaces, sized to their widest cell; a header row first.
class Table {
 public:
  enum class Align { kLeft, kRight };

  // `align` has one entry per header, or is empty for all-left.
  explicit Table(std::vector<std::string> headers, std::vector<Align> align = {});

  // REQUIRES: cells.size() == number of headers.
  void AddRow(std::vector<std::string> cells);
  size_t rows() const { return rows_.size(); }
  void Print(std::ostream& out) const;

 private:
  std::vector<std::string> headers_;
  std::vector<Align> align_;
  std::vector<std::vector<std::string>> rows_;
};

// "label   value" lines with the values aligned.
void PrintFields(std::ostream& out, const std::vector<std::pair<std::string, std::string>>& fields);

// One JSON document, pretty-printed, on stdout.
void PrintJson(const nlohmann::json& doc);

// 93784000 ms -> "1d 2h 3m 4s"; under a minute "12.3s".
std::string FormatUptime(uint64_t ms);
// A latency in nanoseconds -> "87 us", "1.24 ms", "2.10 s".
std::string FormatLatency(uint64_t ns);
// 16 lowercase hex digits.
std::string FormatHex64(uint64_t value);
// Fixed-point with `digits` decimals.
std::string FormatFixed(double value, int digits);

bool StderrIsTerminal();

// A one-line bar redrawn in place on stderr:
//   put  [##########..........]  52%  1040/2000  3120 ops/s  0.20 GB/s
// When disabled every call is a no-op. On a terminal it redraws in place about 10 times a second;
// elsewhere (forced with --progress into a file or pipe) it appends one plain line a second.
class ProgressBar {
 public:
  ProgressBar(std::string label, uint64_t total, bool enabled);
  ~ProgressBar();  // Finish()

  void Update(uint64_t done, uint64_t bytes, double elapsed_s);
  // Erases the bar so the next output starts on a clean line. Idempotent.
  void Finish();

 private:
  std::string label_;
  uint64_t total_;
  bool enabled_;
  bool in_place_;
  bool drawn_ = false;
  double last_draw_s_ = -1;
};

}  // namespace kvstash::cli

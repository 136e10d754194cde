#include "cli/output.h"

#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <iostream>

namespace kvstash::cli {

Table::Table(std::vector<std::string> headers, std::vector<Align> align)
    : headers_(std::move(headers)), align_(std::move(align)) {
  if (align_.empty()) align_.assign(headers_.size(), Align::kLeft);
  assert(align_.size() == headers_.size());
}

void Table::AddRow(std::vector<std::string> cells) {
  assert(cells.size() == headers_.size());
  rows_.push_back(std::move(cells));
}

void Table::Print(std::ostream& out) const {
  std::vector<size_t> width(headers_.size());
  for (size_t c = 0; c < headers_.size(); ++c) width[c] = headers_[c].size();
  for (const auto& row : rows_) {
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  auto print_row = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      const std::string pad(width[c] - row[c].size(), ' ');
      if (c > 0) line += "  ";
      const bool last = c + 1 == row.size();
      if (align_[c] == Align::kRight)
        line += pad + row[c];
      else
        line += last ? row[c] : row[c] + pad;
    }
    out << line << '\n';
  };
  print_row(headers_);
  for (const auto& row : rows_) print_row(row);
}

void PrintFields(std::ostream& out,
                 const std::vector<std::pair<std::string, std::string>>& fields) {
  size_t width = 0;
  for (const auto& [label, value] : fields) width = std::max(width, label.size());
  for (const auto& [label, value] : fields) {
    out << label << std::string(width - label.size() + 2, ' ') << value << '\n';
  }
}

void PrintJson(const nlohmann::json& doc) { std::cout << doc.dump(2) << std::endl; }

std::string FormatUptime(uint64_t ms) {
  if (ms < 60'000) return FormatFixed(static_cast<double>(ms) / 1000.0, 1) + "s";
  uint64_t s = ms / 1000;
  const uint64_t days = s / 86400;
  s %= 86400;
  std::string out;
  if (days > 0) out += std::to_string(days) + "d ";
  out += std::to_string(s / 3600) + "h " + std::to_string(s / 60 % 60) + "m " +
         std::to_string(s % 60) + "s";
  return out;
}

std::string FormatLatency(uint64_t ns) {
  if (ns < 10'000) return FormatFixed(static_cast<double>(ns) / 1e3, 1) + " us";
  if (ns < 1'000'000) return std::to_string(ns / 1000) + " us";
  if (ns < 1'000'000'000) return FormatFixed(static_cast<double>(ns) / 1e6, 2) + " ms";
  return FormatFixed(static_cast<double>(ns) / 1e9, 2) + " s";
}

std::string FormatHex64(uint64_t value) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(value));
  return buf;
}

std::string FormatFixed(double value, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, value);
  return buf;
}

bool StderrIsTerminal() { return ::isatty(STDERR_FILENO) == 1; }

ProgressBar::ProgressBar(std::string label, uint64_t total, bool enabled)
    : label_(std::move(label)), total_(total), enabled_(enabled), in_place_(StderrIsTerminal()) {}

ProgressBar::~ProgressBar() { Finish(); }

void ProgressBar::Update(uint64_t done, uint64_t bytes, double elapsed_s) {
  if (!enabled_) return;
  const double interval = in_place_ ? 0.1 : 1.0;
  if (last_draw_s_ >= 0 && elapsed_s - last_draw_s_ < interval && done < total_) return;
  last_draw_s_ = elapsed_s;
  constexpr int kWidth = 30;
  const double fraction = total_ == 0 ? 1.0 : std::min(1.0, static_cast<double>(done) / total_);
  const int filled = static_cast<int>(fraction * kWidth);
  const double rate = elapsed_s > 0 ? static_cast<double>(done) / elapsed_s : 0;
  const double gbps = elapsed_s > 0 ? static_cast<double>(bytes) / elapsed_s / 1e9 : 0;
  char line[256];
  std::snprintf(line, sizeof(line), "%-4s [%s%s] %3d%%  %llu/%llu  %.0f ops/s  %.2f GB/s",
                label_.c_str(), std::string(filled, '#').c_str(),
                std::string(kWidth - filled, '.').c_str(), static_cast<int>(fraction * 100),
                static_cast<unsigned long long>(done), static_cast<unsigned long long>(total_),
                rate, gbps);
  if (in_place_) {
    std::cerr << '\r' << line << "\x1b[K" << std::flush;
    drawn_ = true;
  } else {
    std::cerr << line << std::endl;
  }
}

void ProgressBar::Finish() {
  if (!drawn_) return;
  std::cerr << "\r\x1b[K" << std::flush;
  drawn_ = false;
}

}  // namespace kvstash::cli

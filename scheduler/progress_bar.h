// ProgressBar: a one-line bar on stderr, drawn only when stderr is a terminal.
//
// Thread-safety: one thread at a time.
#pragma once

#include <string>

namespace kvstash::scheduler {

class ProgressBar {
 public:
  explicit ProgressBar(std::string label);  // enabled iff stderr is a TTY
  ~ProgressBar();                           // finishes the line if anything was drawn
  void Update(double fraction);             // 0..1; redraws only when the percentage changes

 private:
  std::string label_;
  bool enabled_;
  int last_percent_ = -1;
};

}  // namespace kvstash::scheduler

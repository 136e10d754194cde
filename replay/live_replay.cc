#include "replay/live_replay.h"

#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/mutex.h"
#include "replay/trace_prompts.h"

namespace kvstash::replay {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// One streamed completion: reads the server-sent events as they arrive.
class StreamReader {
 public:
  explicit StreamReader(Clock::time_point scheduled) : scheduled_(scheduled) {}

  bool Feed(const char* data, size_t n) {
    buffer_.append(data, n);
    size_t end;
    while ((end = buffer_.find("\n\n")) != std::string::npos) {
      Event(buffer_.substr(0, end));
      buffer_.erase(0, end + 2);
    }
    return true;
  }
  void Body(int status, LiveOutcome& out) {
    if (status != 200) {
      const json j = json::parse(buffer_, nullptr, false);
      const std::string message =
          j.is_object() && j.contains("error") ? j["error"].value("message", "") : "HTTP " + std::to_string(status);
      if (status == 429) {
        out.rejected = true;
        out.reason = message.substr(0, message.find(':'));
      } else {
        out.failed = true;
        out.reason = "HTTP " + std::to_string(status) + ": " + message;
      }
      return;
    }
    if (!error_.empty()) {
      out.failed = true;
      out.reason = error_;
      return;
    }
    if (tokens_.empty()) {
      out.failed = true;
      out.reason = "no token arrived";
      return;
    }
    out.ttft_s = Seconds(tokens_.front() - scheduled_);
    if (tokens_.size() > 1) out.tbt_s = Seconds(tokens_.back() - tokens_.front()) / double(tokens_.size() - 1);
    out.completion_tokens = tokens_.size();
    out.cached_tokens = cached_;
  }

 private:
  void Event(const std::string& event) {
    if (event.rfind("data: ", 0) != 0) return;
    const std::string payload = event.substr(6);
    if (payload == "[DONE]") return;
    const json j = json::parse(payload, nullptr, false);
    if (!j.is_object()) return;
    if (j.contains("error")) {
      error_ = j["error"].value("message", "error event");
      return;
    }
    if (j.contains("choices") && j["choices"].is_array() && !j["choices"].empty()) {
      const json& ids = j["choices"][0]["token_ids"];
      for (size_t i = 0; ids.is_array() && i < ids.size(); ++i) tokens_.push_back(Clock::now());
    }
    if (j.contains("usage") && j["usage"].is_object()) {
      cached_ = j["usage"]["prompt_tokens_details"].value("cached_tokens", uint64_t{0});
    }
  }

  Clock::time_point scheduled_;
  std::string buffer_, error_;
  std::vector<Clock::time_point> tokens_;
  uint64_t cached_ = 0;
};

struct Job {
  size_t index;
  Clock::time_point scheduled;
};

}  // namespace

Result<LiveRun> ReplayLive(const std::vector<TraceRequest>& window, const LiveReplayOptions& o) {
  const size_t colon = o.front_door.rfind(':');
  if (colon == std::string::npos || colon == 0) return InvalidArgument("front door must be HOST:PORT");
  const std::string host = o.front_door.substr(0, colon);
  int port = 0;
  try {
    port = std::stoi(o.front_door.substr(colon + 1));
  } catch (const std::exception&) {
    return InvalidArgument("front door must be HOST:PORT");
  }
  if (!(o.speed > 0) || o.vocab == 0 || o.block_tokens == 0 || o.max_in_flight == 0) {
    return InvalidArgument("speed, vocab, block_tokens and max_in_flight must be positive");
  }
  LiveRun run;
  run.requests.resize(window.size());
  Mutex mu;
  std::condition_variable cv;
  std::deque<Job> jobs GUARDED_BY(mu);
  bool done GUARDED_BY(mu) = false;
  const Clock::time_point start = Clock::now();

  auto worker = [&] {
    httplib::Client client(host, port);
    client.set_keep_alive(true);
    const auto timeout = std::chrono::milliseconds(o.request_timeout_ms);
    client.set_read_timeout(std::chrono::duration_cast<std::chrono::seconds>(timeout).count(), 0);
    while (true) {
      Job job;
      {
        MutexLock lock(mu);
        lock.Wait(cv, [&] {
          mu.AssertHeld();  // a wait predicate runs with the mutex held
          return done || !jobs.empty();
        });
        if (jobs.empty()) return;
        job = jobs.front();
        jobs.pop_front();
      }
      const TraceRequest& r = window[job.index];
      LiveOutcome& out = run.requests[job.index];
      out.scheduled_s = Seconds(job.scheduled - start);
      out.sent_late_s = std::max(0.0, Seconds(Clock::now() - job.scheduled));
      out.prompt_tokens = r.input_length;
      uint64_t max_tokens = std::max<uint64_t>(1, r.output_length);
      if (o.max_output_tokens > 0) max_tokens = std::min<uint64_t>(max_tokens, o.max_output_tokens);
      const json body = {{"prompt", SynthesizePrompt(r, job.index, o.vocab, o.block_tokens)},
                         {"max_tokens", max_tokens},
                         {"temperature", 0},
                         {"stream", true}};
      StreamReader reader(job.scheduled);
      httplib::Request req;
      req.method = "POST";
      req.path = "/v1/completions";
      req.body = body.dump();
      req.set_header("Content-Type", "application/json");
      req.content_receiver = [&reader](const char* data, size_t n, uint64_t, uint64_t) { return reader.Feed(data, n); };
      httplib::Response res;
      httplib::Error error = httplib::Error::Success;
      if (!client.send(req, res, error)) {
        out.failed = true;
        out.reason = "HTTP client: " + httplib::to_string(error);
        continue;
      }
      reader.Body(res.status, out);
    }
  };
  std::vector<std::thread> workers;
  const size_t n_workers = std::min(o.max_in_flight, std::max<size_t>(1, window.size()));
  for (size_t i = 0; i < n_workers; ++i) workers.emplace_back(worker);
  for (size_t i = 0; i < window.size(); ++i) {
    const auto at = start + std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double>(double(window[i].timestamp_ms) / 1000.0 / o.speed));
    std::this_thread::sleep_until(at);  // open loop: the trace's clock, not the answers, sends
    {
      MutexLock lock(mu);
      jobs.push_back({i, at});
    }
    cv.notify_one();
  }
  {
    MutexLock lock(mu);
    done = true;
  }
  cv.notify_all();
  for (std::thread& t : workers) t.join();
  run.makespan_s = Seconds(Clock::now() - start);
  return run;
}

scheduler::PolicySummary SummarizeLive(const LiveRun& run, const std::string& label, double time_scale,
                                       double ttft_slo_s, double tbt_slo_s) {
  scheduler::PolicySummary s;
  s.policy = label;
  s.requests = run.requests.size();
  std::vector<double> ttft, tbt_ms;
  uint64_t met = 0, admitted = 0, prompt = 0, cached = 0;
  const double k = time_scale > 0 ? 1.0 / time_scale : 1.0;
  for (const LiveOutcome& r : run.requests) {
    if (r.rejected) {
      ++s.rejected;
      if (r.reason == "ttft_slo") ++s.rejected_ttft;
      if (r.reason == "tbt_slo") ++s.rejected_tbt;
      continue;
    }
    ++admitted;
    if (r.failed) continue;
    ttft.push_back(r.ttft_s * k);
    if (r.tbt_s >= 0) tbt_ms.push_back(r.tbt_s * k * 1000);
    const bool ok = r.ttft_s * k <= ttft_slo_s && (r.tbt_s < 0 || r.tbt_s * k <= tbt_slo_s);
    met += ok ? 1 : 0;
    prompt += r.prompt_tokens;
    cached += r.cached_tokens;
  }
  s.ttft_s = scheduler::ComputeQuantiles(ttft);
  s.tbt_ms = scheduler::ComputeQuantiles(tbt_ms);
  s.slo_attainment = admitted == 0 ? 0 : double(met) / double(admitted);
  s.effective_capacity = s.requests == 0 ? 0 : double(met) / double(s.requests);
  s.hit_ratio = prompt == 0 ? 0 : double(cached) / double(prompt);
  s.makespan_s = run.makespan_s * k;
  return s;
}

}  // namespace kvstash::replay

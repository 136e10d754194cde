#include "scheduler/plots.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace kvstash::scheduler {
namespace {

bool HaveGnuplot() { return std::system("command -v gnuplot >/dev/null 2>&1") == 0; }

std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

}  // namespace

Result<std::string> WritePlots(const std::string& dir, const std::vector<SimResult>& runs) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Internal("cannot create plot directory " + dir + ": " + ec.message());
  std::string cdf_plot, hit_plot;
  for (const SimResult& run : runs) {
    std::vector<double> ttft;
    for (const auto& r : run.requests) {
      if (!r.rejected) ttft.push_back(r.ttft_s);
    }
    std::sort(ttft.begin(), ttft.end());
    const std::string cdf_file = dir + "/ttft_" + run.policy + ".dat";
    std::ofstream cdf(cdf_file);
    for (size_t i = 0; i < ttft.size(); ++i)
      cdf << ttft[i] << ' ' << double(i + 1) / double(ttft.size()) << '\n';
    const std::string hit_file = dir + "/hit_" + run.policy + ".dat";
    std::ofstream hit(hit_file);
    for (const auto& b : run.timeline) {
      if (b.blocks) hit << b.start_s << ' ' << double(b.hit_blocks) / double(b.blocks) << '\n';
    }
    if (!cdf || !hit) return Internal("cannot write plot data in " + dir);
    cdf_plot += (cdf_plot.empty() ? "" : ", ") +
                ("'ttft_" + run.policy + ".dat' using 1:2 with lines title '" + run.policy + "'");
    hit_plot += (hit_plot.empty() ? "" : ", ") +
                ("'hit_" + run.policy + ".dat' using 1:2 with lines title '" + run.policy + "'");
  }
  const std::string script = dir + "/plots.gp";
  {
    std::ofstream gp(script);
    gp << "set terminal pngcairo size 900,600\nset key bottom right\nset grid\n"
       << "set output 'ttft_cdf.png'\nset title 'TTFT CDF'\nset xlabel 'TTFT (s)'\nset ylabel "
          "'fraction'\n"
       << "set logscale x\nplot " << cdf_plot << "\n"
       << "unset logscale x\nset output 'hit_ratio.png'\nset title 'prefix cache hit ratio over "
          "time'\n"
       << "set xlabel 'time (s)'\nset ylabel 'hit ratio'\nset yrange [0:1]\nplot " << hit_plot
       << "\n";
    if (!gp) return Internal("cannot write " + script);
  }
  if (!HaveGnuplot()) {
    return "gnuplot not found: wrote data and plots.gp to " + dir +
           " (install gnuplot-nox, then run: cd " + dir + " && gnuplot plots.gp)";
  }
  const std::string cmd = "cd " + Quote(dir) + " && gnuplot plots.gp";
  if (std::system(cmd.c_str()) != 0) return Internal("gnuplot failed on " + script);
  return "wrote " + dir + "/ttft_cdf.png and " + dir + "/hit_ratio.png";
}

}  // namespace kvstash::scheduler

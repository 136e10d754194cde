#include "scheduler/least_squares.h"

#include <cmath>
#include <string>

namespace kvstash::scheduler {

Result<std::vector<double>> LeastSquares(const std::vector<std::vector<double>>& rows,
                                         const std::vector<double>& y) {
  const size_t m = rows.size();
  if (m == 0) return InvalidArgument("least squares: no data points");
  const size_t k = rows[0].size();
  if (k == 0) return InvalidArgument("least squares: zero features");
  if (y.size() != m) return InvalidArgument("least squares: row and target counts differ");
  if (m < k) {
    return InvalidArgument("least squares: " + std::to_string(m) + " points cannot determine " +
                           std::to_string(k) + " coefficients");
  }
  // Column-major copy, scaled so every column's largest magnitude is 1.
  std::vector<std::vector<double>> a(k, std::vector<double>(m));
  std::vector<double> scale(k, 0.0);
  for (size_t i = 0; i < m; ++i) {
    if (rows[i].size() != k) return InvalidArgument("least squares: ragged rows");
    if (!std::isfinite(y[i])) return InvalidArgument("least squares: non-finite target");
    for (size_t j = 0; j < k; ++j) {
      if (!std::isfinite(rows[i][j])) return InvalidArgument("least squares: non-finite feature");
      a[j][i] = rows[i][j];
      scale[j] = std::max(scale[j], std::fabs(rows[i][j]));
    }
  }
  for (size_t j = 0; j < k; ++j) {
    if (scale[j] == 0.0) {
      return InvalidArgument("least squares: feature " + std::to_string(j) +
                             " is zero in every point");
    }
    for (double& v : a[j]) v /= scale[j];
  }
  std::vector<double> b = y;
  // Householder QR: reduce a to upper-triangular R while applying the reflections to b.
  for (size_t j = 0; j < k; ++j) {
    double norm = 0;
    for (size_t i = j; i < m; ++i) norm += a[j][i] * a[j][i];
    norm = std::sqrt(norm);
    if (norm < 1e-12) return InvalidArgument("least squares: features are linearly dependent");
    const double alpha = a[j][j] > 0 ? -norm : norm;
    std::vector<double> v(m, 0.0);
    v[j] = a[j][j] - alpha;
    for (size_t i = j + 1; i < m; ++i) v[i] = a[j][i];
    double vnorm2 = 0;
    for (size_t i = j; i < m; ++i) vnorm2 += v[i] * v[i];
    if (vnorm2 == 0) continue;
    auto reflect = [&](std::vector<double>& col) {
      double dot = 0;
      for (size_t i = j; i < m; ++i) dot += v[i] * col[i];
      const double f = 2 * dot / vnorm2;
      for (size_t i = j; i < m; ++i) col[i] -= f * v[i];
    };
    for (size_t c = j; c < k; ++c) reflect(a[c]);
    reflect(b);
  }
  double rmax = 0;
  for (size_t j = 0; j < k; ++j) rmax = std::max(rmax, std::fabs(a[j][j]));
  std::vector<double> x(k, 0.0);
  for (size_t jj = k; jj-- > 0;) {
    if (std::fabs(a[jj][jj]) < 1e-10 * rmax) {
      return InvalidArgument("least squares: features are linearly dependent");
    }
    double s = b[jj];
    for (size_t c = jj + 1; c < k; ++c) s -= a[c][jj] * x[c];
    x[jj] = s / a[jj][jj];
  }
  for (size_t j = 0; j < k; ++j) x[j] /= scale[j];
  return x;
}

}  // namespace kvstash::scheduler

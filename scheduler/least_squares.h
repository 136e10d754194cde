// Ordinary least squares for the cost-model fits: minimise ||A x - y||² over x.
//
// Solved by Householder QR on column-scaled A, so features of very different magnitude (1, n, n²
// with n up to ~10^6) stay well conditioned; the normal equations would square the condition
// number.
//
// Thread-safety: a plain function.
#pragma once

#include <vector>

#include "kvstash/result.h"

namespace kvstash::scheduler {

// rows[i] is the i-th row of A (all rows the same width k >= 1), y[i] its target.
// INVALID_ARGUMENT when rows are ragged, fewer than k rows are given, a value is not finite, or A's
// columns are linearly dependent (the fit would not be unique).
Result<std::vector<double>> LeastSquares(const std::vector<std::vector<double>>& rows,
                                         const std::vector<double>& y);

}  // namespace kvstash::scheduler

#include "model/typicality.h"

#include <torch/torch.h>

#include <cmath>

#include "data/loader.h"
#include "util/progress.h"

namespace malaria {

namespace {

nlohmann::json rows_of(const torch::Tensor& m) {
  const auto c = m.to(torch::kFloat).contiguous();
  nlohmann::json rows = nlohmann::json::array();
  for (int64_t i = 0; i < c.size(0); ++i)
    rows.push_back(std::vector<float>(c[i].data_ptr<float>(), c[i].data_ptr<float>() + c.size(1)));
  return rows;
}

}  // namespace

nlohmann::json fit_typicality(const Classifier& model, const std::vector<Sample>& cells,
                              double quantile, int workers) {
  if (cells.empty()) throw std::invalid_argument("no cells to fit the typicality model on");
  if (!(quantile > 0.5 && quantile <= 1.0))
    throw std::invalid_argument("the typicality quantile must be above 0.5 and at most 1");
  const int d = model.feature_size();
  if (d == 0) model.features(nullptr, 1);  // throws the reason
  LoaderOptions lo;
  lo.image_size = model.image_size();
  lo.batch_size = 128;
  lo.workers = workers;
  BatchLoader loader(cells, lo);
  loader.start_epoch(0);
  torch::Tensor features = torch::empty({static_cast<int64_t>(cells.size()), d}, torch::kDouble);
  torch::Tensor labels = torch::empty({static_cast<int64_t>(cells.size())}, torch::kLong);
  ProgressBar bar(cells.size(), "typicality");
  size_t done = 0;
  while (auto batch = loader.next()) {
    const auto f = model.features(batch->pixels.data(), batch->size());
    const auto n = static_cast<int64_t>(batch->size());
    features.narrow(0, static_cast<int64_t>(done), n)
        .copy_(torch::from_blob(const_cast<float*>(f.data()), {n, d}).to(torch::kDouble));
    for (int64_t i = 0; i < n; ++i)
      labels[static_cast<int64_t>(done) + i] = static_cast<int64_t>(batch->labels[i] >= 0.5f);
    done += batch->size();
    bar.update(done);
  }
  bar.finish();
  torch::Tensor means = torch::zeros({2, d}, torch::kDouble);
  torch::Tensor centred = features.clone();
  for (int64_t c = 0; c < 2; ++c) {
    const auto rows = labels == c;
    if (rows.sum().item<int64_t>() == 0)
      throw std::invalid_argument("the typicality model needs cells of both classes");
    means[c] = features.index({rows}).mean(0);
    centred.index_put_({rows}, features.index({rows}) - means[c]);
  }
  torch::Tensor cov = centred.t().matmul(centred) / static_cast<double>(cells.size());
  // A little shrinkage keeps the inverse stable where features hardly vary.
  const double ridge = 1e-3 * cov.diagonal().mean().item<double>() + 1e-12;
  cov += ridge * torch::eye(d, torch::kDouble);
  const torch::Tensor precision = torch::linalg::inv(cov);
  const auto diff = features.unsqueeze(1) - means.unsqueeze(0);
  const auto distance =
      std::get<0>((torch::matmul(diff, precision) * diff).sum(2).clamp_min(0).min(1)).sqrt();
  const auto sorted = std::get<0>(distance.sort());
  auto at_quantile = [&](double q) {
    const auto i = static_cast<int64_t>(std::ceil(q * static_cast<double>(cells.size()))) - 1;
    return sorted[std::clamp<int64_t>(i, 0, sorted.size(0) - 1)].item<double>();
  };
  nlohmann::json quantiles = nlohmann::json::object();
  for (double q : kTypicalityQuantiles) quantiles[std::to_string(q).substr(0, 6)] = at_quantile(q);
  return {{"method",
           "Mahalanobis distance of the pooled last-stage features to the nearer class mean, "
           "shared covariance (Lee et al. 2018)"},
          {"features", d},
          {"fitted_on_cells", cells.size()},
          {"quantile", quantile},
          {"threshold", at_quantile(quantile)},
          {"training_distance_quantiles", quantiles},
          {"means", rows_of(means)},
          {"precision", rows_of(precision)}};
}

}  // namespace malaria

// The learned half of "is this a cell?": how far an image's features (the network's globally
// pooled last convolution stage) lie from those of the training cells, as the Mahalanobis
// distance to the nearer class mean under one shared covariance (Lee et al. 2018). Fitted on the
// training cells of the model; an image farther than the threshold, a high quantile of the
// training cells' own distances chosen by cross-validation, is Rejected. Torch-free header.
#pragma once

#include <nlohmann/json.hpp>
#include <vector>

#include "data/dataset.h"
#include "model/classifier.h"

namespace malaria {

// The quantiles of the training cells' distances recorded in the fit, so that another
// threshold can be compared without refitting.
inline constexpr double kTypicalityQuantiles[] = {0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0};

// The "typicality" block of a model file's metadata: means, precision, the threshold at
// `quantile` of the training cells' distances, and the recorded quantiles. Images are read as in
// training, without augmentation.
nlohmann::json fit_typicality(const Classifier& model, const std::vector<Sample>& cells,
                              double quantile, int workers = 1);

}  // namespace malaria

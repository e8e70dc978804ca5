// Annotated smear fields: the IML annotations.json format and a simple CSV, field groups, and
// matching detections to annotated cells. Torch-free.
#pragma once

#include <opencv2/core.hpp>
#include <string>
#include <vector>

namespace malaria {

struct AnnotatedCell {
  cv::Rect box;      // x, y = top-left corner, in image pixels
  int label = 0;     // kParasitized, kUninfected, or -1 for "difficult" (neither counted nor used)
  std::string type;  // as annotated: "red blood cell", "ring", "trophozoite", ...
};

struct AnnotatedField {
  std::string path;   // the image file
  std::string name;   // its file name
  std::string group;  // fields that are split and reported together (no "_IMG" in it)
  std::vector<AnnotatedCell> cells;
};

// Fields are grouped by this many consecutive file names unless the CSV names a group: one
// group is about 1,000 cells, enough for a parasitemia figure that is not counting noise.
inline constexpr int kFieldsPerGroup = 10;

// DIR/annotations.json (IML: [{"image_name", "objects": [{"type", "bbox": {x, y, w, h}}]}]) or
// DIR/annotations.csv (header image,x,y,w,h,label[,group]; label Parasitized, Uninfected, an IML
// type, or difficult). Images are looked up in DIR/images/ and then DIR/. Throws
// std::runtime_error naming the file and line for anything malformed or missing.
std::vector<AnnotatedField> read_field_annotations(const std::string& dir);

// A detection matches an annotated cell when their IoU is at least 0.3 or the detection's centre
// lies inside the annotated box. For each annotated cell, the index of its best-overlapping
// matching detection, or -1.
std::vector<int> match_annotations(const std::vector<cv::Rect>& detections,
                                   const std::vector<AnnotatedCell>& annotated);

double intersection_over_union(const cv::Rect& a, const cv::Rect& b);

}  // namespace malaria

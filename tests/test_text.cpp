// Text helpers every output path relies on: UTF-8 repair, printable log text, CSV fields.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "util/text.h"

using namespace malaria;

TEST(Utf8, ValidTextIsKeptAndInvalidBytesAreReplaced) {
  EXPECT_EQ(to_valid_utf8("plain ascii"), "plain ascii");
  EXPECT_EQ(to_valid_utf8("Gr\xC3\xBC\xC3\x9F \xE2\x82\xAC \xF0\x9F\x94\xAC"),
            "Gr\xC3\xBC\xC3\x9F \xE2\x82\xAC \xF0\x9F\x94\xAC");
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(to_valid_utf8("a\xFF"), "a" + fffd);
  EXPECT_EQ(to_valid_utf8("\xC0\xAF"), fffd + fffd);                        // overlong '/'
  EXPECT_EQ(to_valid_utf8("\xED\xA0\x80"), fffd + fffd + fffd);             // a surrogate
  EXPECT_EQ(to_valid_utf8("\xE2\x82"), fffd + fffd);                        // cut sequence
  EXPECT_EQ(to_valid_utf8("\xF4\x90\x80\x80"), fffd + fffd + fffd + fffd);  // past U+10FFFF
  // Whatever the bytes, the result goes into JSON without an exception.
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  EXPECT_NO_THROW(nlohmann::json(to_valid_utf8(all)).dump());
}

TEST(Utf8, PrintableHasNoControlCharactersAndIsBounded) {
  EXPECT_EQ(printable("a\nb\rc\td"), "a?b?c?d");
  EXPECT_EQ(printable(std::string(500, 'x'), 10), std::string(10, 'x') + "...");
}

TEST(Csv, FieldsRoundTripThroughTheParser) {
  const std::vector<std::string> fields = {"plain", "with,comma", "with \"quote\"", "two\nlines",
                                           ""};
  std::string line;
  for (const auto& f : fields) line += (line.empty() ? "" : ",") + csv_field(f);
  EXPECT_EQ(csv_field("with \"quote\""), "\"with \"\"quote\"\"\"");
  EXPECT_EQ(parse_csv_line(line), fields);
}

// Building blocks of the Prometheus text exposition format 0.0.4: name
// validation, escaping and number formatting. Registry::Serialize uses them;
// they are public so that other exporters (and tests) spell things the same
// way.
//
// Thread safety: pure functions; safe from any thread.
#ifndef STELLA_SRC_METRICS_TEXT_FORMAT_H_
#define STELLA_SRC_METRICS_TEXT_FORMAT_H_

#include <string>
#include <string_view>

namespace stella {
namespace metrics {

// [a-zA-Z_:][a-zA-Z0-9_:]*
bool IsValidMetricName(std::string_view name);
// [a-zA-Z_][a-zA-Z0-9_]* and not starting with "__" (reserved by Prometheus).
bool IsValidLabelName(std::string_view name);

// Label values: backslash -> \\, double quote -> \", newline -> \n.
std::string EscapeLabelValue(std::string_view value);
// HELP text: backslash -> \\, newline -> \n (quotes stay as they are).
std::string EscapeHelp(std::string_view help);

// A sample value as Prometheus parses it: "+Inf", "-Inf", "NaN"; integral
// values below 2^53 in plain digits ("1000000", not "1e+06"); everything else
// in the shortest form that round-trips exactly. Independent of the locale.
std::string FormatValue(double value);

}  // namespace metrics
}  // namespace stella

#endif  // STELLA_SRC_METRICS_TEXT_FORMAT_H_

// The CRD (crds/stellajob.yaml, which the Helm chart links) repeats the spec
// library's defaults, enums and ranges for the API server. The spec library
// is their one home; this test reads the CRD and checks every copy against
// it, so the two cannot drift:
//   - each `default:` equals what ToYaml writes for a job that leaves the
//     field out (the library's default);
//   - each enum value is accepted by ParseStellaJob;
//   - each numeric bound is accepted and the value just past it refused;
//   - the literals in the sync CEL rule are the library's density defaults.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <regex>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "src/spec/stella_job.h"

namespace stella::spec {
namespace {

// The smallest valid job: every other field takes the library's default.
constexpr char kMinimal[] = R"(apiVersion: stella.dev/v1alpha1
kind: StellaJob
metadata:
  name: crd-check
spec:
  model:
    name: mlp
  dataset:
    name: fashion-mnist
  training:
    steps: 10
  clusters:
    - name: a
)";

std::string SourceDir() {
  const char* env = std::getenv("STELLA_SOURCE_DIR");
  return env != nullptr ? env : STELLA_SOURCE_DIR;
}

YAML::Node SpecSchema() {
  YAML::Node crd = YAML::LoadFile(SourceDir() + "/crds/stellajob.yaml");
  return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
}

// Calls `visit(path, schema)` for every scalar property under spec, through
// objects and arrays of objects (an array's items are reached as "[0]").
void Walk(const YAML::Node& schema, const std::vector<std::string>& path,
          const std::function<void(const std::vector<std::string>&, const YAML::Node&)>& visit) {
  const std::string type = schema["type"] ? schema["type"].as<std::string>() : "";
  if (type == "object" && schema["properties"]) {
    for (const auto& kv : schema["properties"]) {
      std::vector<std::string> child = path;
      child.push_back(kv.first.as<std::string>());
      Walk(kv.second, child, visit);
    }
  } else if (type == "array" && schema["items"]) {
    std::vector<std::string> child = path;
    child.push_back("[0]");
    Walk(schema["items"], child, visit);
  } else if (type == "string" || type == "number" || type == "integer" || type == "boolean") {
    visit(path, schema);
  }
}

std::string Join(const std::vector<std::string>& path) {
  std::string out = "spec";
  for (const auto& p : path) out += p == "[0]" ? p : "." + p;
  return out;
}

// The node at `path` under `root`, or an undefined node. With `create`,
// missing maps are made (never list items: only existing ones are reached).
YAML::Node At(YAML::Node root, const std::vector<std::string>& path, bool create) {
  YAML::Node n = root;
  for (const auto& p : path) {
    if (p == "[0]") {
      if (!n.IsSequence() || n.size() == 0) return YAML::Node(YAML::NodeType::Undefined);
      n.reset(n[0]);
    } else {
      if (!n.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
      if (!n[p]) {
        if (!create) return YAML::Node(YAML::NodeType::Undefined);
        n[p] = YAML::Node(YAML::NodeType::Map);
      }
      YAML::Node next = n[p];
      n.reset(next);
    }
  }
  return n;
}

// Enum values valid only together with other fields (cross-field rules, like
// the CRD's CEL rules): the fields they need, set on the minimal job.
void AddCompanions(const std::string& field, const std::string& value, YAML::Node spec) {
  const bool own_data = field == "spec.dataset.format" && value != "idx";
  const bool language_model = field == "spec.model.task" && value == "language-model";
  if (!own_data && !language_model) return;
  spec["model"].remove("name");
  spec["model"]["torchscript"] = "/models/m.pt";
  spec["dataset"].remove("name");
  spec["dataset"]["validationPath"] = "/data/val";
  const std::string format = language_model ? "tokens" : value;
  spec["dataset"]["format"] = format;
  if (format == "tokens") spec["model"]["task"] = "language-model";
  if (format == "npy") {
    spec["dataset"]["labelsPath"] = "/data/train-labels.npy";
    spec["dataset"]["validationLabelsPath"] = "/data/val-labels.npy";
  }
}

StatusOr<StellaJob> ParseWith(const std::vector<std::string>& path, const std::string& value) {
  YAML::Node job = YAML::Load(kMinimal);
  YAML::Node spec = job["spec"];
  YAML::Node leaf = At(spec, path, /*create=*/true);
  if (!leaf.IsDefined()) return InvalidArgumentError("path not reachable in the minimal job");
  leaf = YAML::Load(value);
  AddCompanions(Join(path), YAML::Load(value).as<std::string>(), spec);
  YAML::Emitter out;
  out << job;
  return ParseStellaJob(out.c_str());
}

bool Reachable(const std::vector<std::string>& path) {
  YAML::Node job = YAML::Load(kMinimal);
  YAML::Node spec = job["spec"];
  return At(spec, path, true).IsDefined();
}

TEST(CrdSchemaTest, DefaultsAreTheSpecLibrarys) {
  auto minimal = ParseStellaJob(kMinimal);
  ASSERT_TRUE(minimal.ok()) << minimal.status().ToString();
  const YAML::Node emitted = YAML::Load(ToYaml(*minimal))["spec"];
  int checked = 0;
  Walk(SpecSchema(), {}, [&](const std::vector<std::string>& path, const YAML::Node& schema) {
    if (!schema["default"]) return;
    const YAML::Node got = At(emitted, path, false);
    if (!got.IsDefined()) {
      // Only fields of list items the minimal job lacks may go unchecked.
      EXPECT_FALSE(Reachable(path) && std::find(path.begin(), path.end(), "[0]") == path.end())
          << Join(path) << ": the CRD has a default but ToYaml writes no value";
      return;
    }
    const std::string type = schema["type"].as<std::string>();
    if (type == "number" || type == "integer") {
      EXPECT_EQ(schema["default"].as<double>(), got.as<double>()) << Join(path);
    } else {
      EXPECT_EQ(schema["default"].as<std::string>(), got.as<std::string>()) << Join(path);
    }
    ++checked;
  });
  EXPECT_GE(checked, 30);  // the CRD has about 40 defaults
}

TEST(CrdSchemaTest, EveryEnumValueParses) {
  int checked = 0;
  Walk(SpecSchema(), {}, [&](const std::vector<std::string>& path, const YAML::Node& schema) {
    if (!schema["enum"] || !Reachable(path)) return;
    for (const auto& v : schema["enum"]) {
      const std::string value = v.as<std::string>();
      if (value.empty()) continue;  // "" = absent
      auto job = ParseWith(path, "\"" + value + "\"");
      EXPECT_TRUE(job.ok()) << Join(path) << " = " << value << ": " << job.status().ToString();
      ++checked;
    }
    auto bogus = ParseWith(path, "not-a-value");
    EXPECT_FALSE(bogus.ok()) << Join(path) << " accepted a value outside the CRD's enum";
  });
  EXPECT_GE(checked, 10);
}

TEST(CrdSchemaTest, NumericBoundsMatch) {
  int checked = 0;
  Walk(SpecSchema(), {}, [&](const std::vector<std::string>& path, const YAML::Node& schema) {
    const std::string type = schema["type"].as<std::string>();
    if ((type != "number" && type != "integer") || !Reachable(path)) return;
    // density must stay within [minDensity, maxDensity]: move those along.
    const bool density = path.size() == 2 && path[0] == "sync" && path[1].find("ensity") != std::string::npos;
    if (density) return;  // covered by the CEL rule test below
    const double step = type == "integer" ? 1 : 1e-9;
    auto check = [&](const char* key, bool exclusive, double outward) {
      if (!schema[key]) return;
      const double bound = schema[key].as<double>();
      auto text = [&](double v) {
        char buf[64];
        std::snprintf(buf, sizeof(buf), type == "integer" ? "%.0f" : "%.17g", v);
        return std::string(buf);
      };
      // steps and epochs: 0 is valid only while the other is set.
      const bool cross_field = path.size() == 2 && path[0] == "training";
      if (!exclusive && !cross_field) {
        auto at = ParseWith(path, text(bound));
        EXPECT_TRUE(at.ok()) << Join(path) << " = " << bound << " (the CRD's " << key
                             << "): " << at.status().ToString();
      }
      const double past = exclusive ? bound : bound + outward * step * std::max(1.0, std::fabs(bound));
      auto beyond = ParseWith(path, text(past));
      EXPECT_FALSE(beyond.ok()) << Join(path) << " = " << past << " is outside the CRD's " << key;
      ++checked;
    };
    check("minimum", schema["exclusiveMinimum"] && schema["exclusiveMinimum"].as<bool>(), -1);
    check("maximum", schema["exclusiveMaximum"] && schema["exclusiveMaximum"].as<bool>(), +1);
  });
  EXPECT_GE(checked, 20);
}

TEST(CrdSchemaTest, SyncRuleLiteralsAreTheDensityDefaults) {
  const YAML::Node sync = SpecSchema()["properties"]["sync"];
  const std::string rule = sync["x-kubernetes-validations"][0]["rule"].as<std::string>();
  const SyncSpec defaults;
  const std::regex fallback(R"(has\(self\.(\w+)\) \? self\.\w+ : ([0-9.eE+-]+))");
  int checked = 0;
  for (std::sregex_iterator it(rule.begin(), rule.end(), fallback), end; it != end; ++it) {
    const std::string field = (*it)[1];
    const double literal = std::stod((*it)[2]);
    const double want = field == "density"      ? defaults.density
                        : field == "minDensity" ? defaults.min_density
                        : field == "maxDensity" ? defaults.max_density
                                                : NAN;
    EXPECT_EQ(literal, want) << "spec.sync." << field << " in the CEL rule";
    ++checked;
  }
  EXPECT_EQ(checked, 4);
}

}  // namespace
}  // namespace stella::spec

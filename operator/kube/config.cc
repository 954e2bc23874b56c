#include "operator/kube/config.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>

#include "src/base/file.h"

namespace stella::kube {
namespace {

// The file's bytes; errors start with `what` (the kubeconfig field).
StatusOr<std::string> ReadFileFor(const std::string& path, const std::string& what) {
  StatusOr<std::string> bytes = ReadWholeFile(path);
  if (!bytes.ok()) return bytes.status().WithContext(what);
  return bytes;
}

std::string JoinPath(const std::string& base_dir, const std::string& path) {
  if (path.empty() || path[0] == '/' || base_dir.empty()) return path;
  if (base_dir.back() == '/') return base_dir + path;
  return base_dir + "/" + path;
}

// A string-valued field: absent -> "", present but not a scalar -> error.
StatusOr<std::string> StringField(const YAML::Node& node, const char* key, const std::string& path) {
  const YAML::Node v = node[key];
  if (!v || v.IsNull()) return std::string();
  if (!v.IsScalar()) {
    return InvalidArgumentError("kubeconfig: " + path + "." + key + ": expected a string");
  }
  return v.Scalar();
}

StatusOr<bool> BoolField(const YAML::Node& node, const char* key, const std::string& path) {
  const YAML::Node v = node[key];
  if (!v || v.IsNull()) return false;
  bool b = false;
  if (!v.IsScalar() || !YAML::convert<bool>::decode(v, b)) {
    return InvalidArgumentError("kubeconfig: " + path + "." + key + ": expected true or false, got \"" +
                                (v.IsScalar() ? v.Scalar() : std::string("<non-scalar>")) + "\"");
  }
  return b;
}

// Finds the entry of `list_key` (clusters, users, contexts) whose name is
// `name`; `*index` receives its position for error messages.
StatusOr<YAML::Node> FindNamed(const YAML::Node& root, const char* list_key, const std::string& name,
                               const char* referenced_by, int* index) {
  const YAML::Node list = root[list_key];
  if (list && !list.IsSequence()) {
    return InvalidArgumentError(std::string("kubeconfig: ") + list_key + ": expected a list");
  }
  if (list) {
    for (size_t i = 0; i < list.size(); ++i) {
      const YAML::Node n = list[i]["name"];
      if (n && n.IsScalar() && n.Scalar() == name) {
        *index = static_cast<int>(i);
        return list[i];
      }
    }
  }
  return InvalidArgumentError(std::string("kubeconfig: ") + referenced_by + ": no entry named \"" + name + "\" in " +
                              list_key);
}

// Where a kubeconfig came from decides whether it may name files.
struct Source {
  std::string base_dir;     // relative paths are resolved against it
  bool allow_files = true;  // false: a kubeconfig from a Secret (see ParseInlineKubeconfig)
};

Status RefuseFile(const Source& src, const std::string& path, const char* key, const std::string& file) {
  if (src.allow_files || file.empty()) return Status::Ok();
  return InvalidArgumentError("kubeconfig: " + path + "." + key + ": file references (\"" + file +
                              "\") are not allowed in a kubeconfig from a Secret; inline the "
                              "content (kubectl config view --minify --flatten --raw)");
}

// Reads PEM either inline (`data_key`, base64) or from a file (`file_key`).
// Both set is an error, as in kubectl.
StatusOr<std::string> PemField(const YAML::Node& node, const char* data_key, const char* file_key,
                               const std::string& path, const Source& src) {
  STELLA_ASSIGN_OR_RETURN(std::string data, StringField(node, data_key, path));
  STELLA_ASSIGN_OR_RETURN(std::string file, StringField(node, file_key, path));
  if (!data.empty() && !file.empty()) {
    return InvalidArgumentError("kubeconfig: " + path + ": set only one of " + data_key + " and " + file_key);
  }
  if (!data.empty()) {
    StatusOr<std::string> pem = DecodeBase64(data);
    if (!pem.ok()) {
      return InvalidArgumentError("kubeconfig: " + path + "." + data_key + ": " + pem.status().message());
    }
    if (pem->find("-----BEGIN") == std::string::npos) {
      return InvalidArgumentError("kubeconfig: " + path + "." + data_key +
                                  ": decoded data is not PEM (no -----BEGIN line)");
    }
    return *pem;
  }
  STELLA_RETURN_IF_ERROR(RefuseFile(src, path, file_key, file));
  if (!file.empty()) {
    StatusOr<std::string> pem = ReadFileFor(JoinPath(src.base_dir, file), "kubeconfig: " + path + "." + file_key);
    if (!pem.ok()) return InvalidArgumentError(pem.status().message());
    if (pem->find("-----BEGIN") == std::string::npos) {
      return InvalidArgumentError("kubeconfig: " + path + "." + file_key + ": file \"" + file +
                                  "\" is not PEM (no -----BEGIN line)");
    }
    return *pem;
  }
  return std::string();
}

StatusOr<ClusterConfig> ParseKubeconfigNode(const YAML::Node& root, const std::string& context, const Source& src) {
  if (!root.IsMap()) return InvalidArgumentError("kubeconfig: expected a mapping at the top level");
  ClusterConfig cfg;

  std::string ctx_name = context;
  if (ctx_name.empty()) {
    STELLA_ASSIGN_OR_RETURN(ctx_name, StringField(root, "current-context", "kubeconfig"));
    if (ctx_name.empty()) {
      return InvalidArgumentError("kubeconfig: current-context: not set and no context was given");
    }
  }
  int ctx_index = 0;
  STELLA_ASSIGN_OR_RETURN(YAML::Node ctx_entry, FindNamed(root, "contexts", ctx_name,
                                                          context.empty() ? "current-context" : "context", &ctx_index));
  const std::string ctx_path = "contexts[" + std::to_string(ctx_index) + "].context";
  const YAML::Node ctx = ctx_entry["context"];
  if (!ctx || !ctx.IsMap()) return InvalidArgumentError("kubeconfig: " + ctx_path + ": missing");
  cfg.name = ctx_name;

  STELLA_ASSIGN_OR_RETURN(std::string cluster_name, StringField(ctx, "cluster", ctx_path));
  if (cluster_name.empty()) {
    return InvalidArgumentError("kubeconfig: " + ctx_path + ".cluster: required");
  }
  STELLA_ASSIGN_OR_RETURN(std::string user_name, StringField(ctx, "user", ctx_path));
  STELLA_ASSIGN_OR_RETURN(std::string ns, StringField(ctx, "namespace", ctx_path));
  if (!ns.empty()) cfg.default_namespace = ns;

  // Cluster.
  int cl_index = 0;
  STELLA_ASSIGN_OR_RETURN(YAML::Node cl_entry,
                          FindNamed(root, "clusters", cluster_name, (ctx_path + ".cluster").c_str(), &cl_index));
  const std::string cl_path = "clusters[" + std::to_string(cl_index) + "].cluster";
  const YAML::Node cl = cl_entry["cluster"];
  if (!cl || !cl.IsMap()) return InvalidArgumentError("kubeconfig: " + cl_path + ": missing");
  STELLA_ASSIGN_OR_RETURN(cfg.server, StringField(cl, "server", cl_path));
  if (cfg.server.rfind("https://", 0) != 0 && cfg.server.rfind("http://", 0) != 0) {
    return InvalidArgumentError("kubeconfig: " + cl_path + ".server: expected an https:// URL, got \"" + cfg.server +
                                "\"");
  }
  while (!cfg.server.empty() && cfg.server.back() == '/') cfg.server.pop_back();
  STELLA_ASSIGN_OR_RETURN(cfg.insecure_skip_tls_verify, BoolField(cl, "insecure-skip-tls-verify", cl_path));
  STELLA_ASSIGN_OR_RETURN(cfg.ca_pem,
                          PemField(cl, "certificate-authority-data", "certificate-authority", cl_path, src));
  if (cfg.insecure_skip_tls_verify && !cfg.ca_pem.empty()) {
    return InvalidArgumentError("kubeconfig: " + cl_path +
                                ": insecure-skip-tls-verify and a certificate authority are "
                                "mutually exclusive");
  }
  for (const char* unsupported : {"proxy-url"}) {
    if (cl[unsupported]) {
      return InvalidArgumentError("kubeconfig: " + cl_path + "." + unsupported + ": not supported");
    }
  }

  // User (optional: an anonymous context is legal, if rarely useful).
  if (!user_name.empty()) {
    int u_index = 0;
    STELLA_ASSIGN_OR_RETURN(YAML::Node u_entry,
                            FindNamed(root, "users", user_name, (ctx_path + ".user").c_str(), &u_index));
    const std::string u_path = "users[" + std::to_string(u_index) + "].user";
    const YAML::Node u = u_entry["user"];
    if (!u || !u.IsMap()) return InvalidArgumentError("kubeconfig: " + u_path + ": missing");
    for (const char* unsupported : {"exec", "auth-provider", "username", "password"}) {
      if (u[unsupported]) {
        return InvalidArgumentError("kubeconfig: " + u_path + "." + unsupported +
                                    ": not supported (use a token, tokenFile or client "
                                    "certificate)");
      }
    }
    STELLA_ASSIGN_OR_RETURN(cfg.bearer_token, StringField(u, "token", u_path));
    STELLA_ASSIGN_OR_RETURN(std::string token_file, StringField(u, "tokenFile", u_path));
    if (!cfg.bearer_token.empty() && !token_file.empty()) {
      return InvalidArgumentError("kubeconfig: " + u_path + ": set only one of token and tokenFile");
    }
    STELLA_RETURN_IF_ERROR(RefuseFile(src, u_path, "tokenFile", token_file));
    if (!token_file.empty()) {
      cfg.token_file = JoinPath(src.base_dir, token_file);
      StatusOr<std::string> t = ReadFileFor(cfg.token_file, "kubeconfig: " + u_path + ".tokenFile");
      if (!t.ok()) return InvalidArgumentError(t.status().message());
    }
    STELLA_ASSIGN_OR_RETURN(cfg.client_cert_pem,
                            PemField(u, "client-certificate-data", "client-certificate", u_path, src));
    STELLA_ASSIGN_OR_RETURN(cfg.client_key_pem, PemField(u, "client-key-data", "client-key", u_path, src));
    if (cfg.client_cert_pem.empty() != cfg.client_key_pem.empty()) {
      return InvalidArgumentError("kubeconfig: " + u_path + ": " +
                                  (cfg.client_cert_pem.empty() ? "client-key is set without client-certificate"
                                                               : "client-certificate is set without client-key"));
    }
  }
  return cfg;
}

}  // namespace

StatusOr<std::string> DecodeBase64(const std::string& in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string clean;
  clean.reserve(in.size());
  for (char c : in) {
    if (c == '\n' || c == '\r') continue;
    clean.push_back(c);
  }
  if (clean.size() % 4 != 0) {
    return InvalidArgumentError("not valid base64 (length " + std::to_string(clean.size()) +
                                " is not a multiple of 4)");
  }
  std::string out;
  out.reserve(clean.size() / 4 * 3);
  for (size_t i = 0; i < clean.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int j = 0; j < 4; ++j) {
      const char c = clean[i + j];
      if (c == '=' && i + 4 == clean.size() && j >= 2) {
        v[j] = 0;
        ++pad;
        continue;
      }
      v[j] = pad ? -1 : value(c);
      if (v[j] < 0) {
        return InvalidArgumentError("not valid base64 (bad character at offset " + std::to_string(i + j) + ")");
      }
    }
    const unsigned n = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
    out.push_back(static_cast<char>((n >> 16) & 0xff));
    if (pad < 2) out.push_back(static_cast<char>((n >> 8) & 0xff));
    if (pad < 1) out.push_back(static_cast<char>(n & 0xff));
  }
  return out;
}

namespace {

StatusOr<ClusterConfig> ParseKubeconfigSource(const std::string& yaml, const std::string& context, const Source& src) {
  try {
    return ParseKubeconfigNode(YAML::Load(yaml), context, src);
  } catch (const YAML::Exception& e) {
    return InvalidArgumentError(std::string("kubeconfig: not valid YAML: ") + e.what());
  }
}

}  // namespace

StatusOr<ClusterConfig> ParseKubeconfig(const std::string& yaml, const std::string& context,
                                        const std::string& base_dir) {
  return ParseKubeconfigSource(yaml, context, Source{base_dir, /*allow_files=*/true});
}

StatusOr<ClusterConfig> ParseInlineKubeconfig(const std::string& yaml, const std::string& context) {
  return ParseKubeconfigSource(yaml, context, Source{"", /*allow_files=*/false});
}

StatusOr<ClusterConfig> LoadKubeconfigFile(const std::string& path, const std::string& context) {
  STELLA_ASSIGN_OR_RETURN(std::string text, ReadFileFor(path, "kubeconfig"));
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "" : path.substr(0, slash == 0 ? 1 : slash);
  StatusOr<ClusterConfig> cfg = ParseKubeconfig(text, context, dir);
  if (!cfg.ok()) return cfg.status().WithContext(path);
  return cfg;
}

StatusOr<ClusterConfig> InClusterConfig(const std::string& sa_dir) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (!host || !*host || !port || !*port) {
    return FailedPreconditionError(
        "in-cluster config: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set "
        "(not running in a pod?)");
  }
  ClusterConfig cfg;
  cfg.name = "in-cluster";
  const std::string h = host;
  // IPv6 literals need brackets in a URL.
  cfg.server = "https://" + (h.find(':') != std::string::npos ? "[" + h + "]" : h) + ":" + port;
  cfg.token_file = sa_dir + "/token";
  STELLA_ASSIGN_OR_RETURN(std::string token, ReadFileFor(cfg.token_file, "in-cluster config: token"));
  if (token.empty()) return InvalidArgumentError("in-cluster config: " + cfg.token_file + ": empty token");
  STELLA_ASSIGN_OR_RETURN(cfg.ca_pem, ReadFileFor(sa_dir + "/ca.crt", "in-cluster config: ca.crt"));
  StatusOr<std::string> ns = ReadFileFor(sa_dir + "/namespace", "in-cluster config: namespace");
  if (ns.ok()) {
    std::string n = *ns;
    while (!n.empty() && (n.back() == '\n' || n.back() == ' ')) n.pop_back();
    if (!n.empty()) cfg.default_namespace = n;
  }
  return cfg;
}

}  // namespace stella::kube

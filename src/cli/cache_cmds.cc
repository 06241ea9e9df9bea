// src/cli/cache_cmds.cc

#include "cli/cache_cmds.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/cli_common.h"
#include "store/envelope.h"
#include "store/tag_index.h"

namespace toolops::cli {

const char kClearUsage[] =
    "usage: toolops clear [STORE] [--tool T [--tool-version V]] [--config FILE] [--yes]\n"
    "\n"
    "Removes cached entries from the configured store STORE, or from every\n"
    "configured shared store (SQLite, Redis / Valkey, PostgreSQL) when STORE is not\n"
    "given: all of them, or only those of tool T. Memory stores live inside each\n"
    "agent process and are skipped (clear them from the process).\n"
    "\n"
    "options:\n"
    "  --tool T           only the entries of tool T (its wrapped name)\n"
    "  --tool-version V   T's version (default: [tools.T].version, else \"1\")\n"
    "  --config FILE      the configuration (default: $TOOLOPS_CONFIG, else\n"
    "                     ./toolops.toml if present)\n"
    "  --yes              do not ask for confirmation (needed when stdin is not a\n"
    "                     terminal)\n"
    "\n"
    "exit status: 0 cleared, 1 a store could not be opened, 2 bad usage, an\n"
    "unknown store, or no confirmation.\n";

const char kInvalidateUsage[] =
    "usage: toolops invalidate --tag T [--store S] [--config FILE]\n"
    "\n"
    "Removes from the shared stores every entry of the tools that carry tag T:\n"
    "the tools whose [tools.NAME] lists T in `tags`, and the tools recorded\n"
    "under T in the store by the agents that wrapped them (Python cache_tags=[...]\n"
    "on a shared store); and every single entry tagged T by its call (Python\n"
    "cache_tags=callable), which agents record in SQLite, Redis and PostgreSQL\n"
    "stores.\n"
    "Copies in the agents' own memory stores stay until they expire or the agent\n"
    "invalidates them (cache_manager.invalidate).\n"
    "\n"
    "options:\n"
    "  --tag T            the tag (repeat for several)\n"
    "  --store S          only this configured store (default: every shared one)\n"
    "  --config FILE      the configuration (default: $TOOLOPS_CONFIG, else\n"
    "                     ./toolops.toml if present)\n"
    "\n"
    "exit status: 0 done, 1 nothing carries the tag or a store could not be\n"
    "opened, 2 bad usage.\n";

const char kInspectUsage[] =
    "usage: toolops inspect --tool T --args JSON [--store S] [options]\n"
    "\n"
    "Shows what the shared stores hold for one call of tool T: the key digest the\n"
    "store sees, whether the entry is fresh or stale and until when, its size and\n"
    "which store holds it. The cached value itself is never printed, and the\n"
    "values of sensitive parameters are masked.\n"
    "\n"
    "JSON gives the call's arguments as an object in the tool's parameter order\n"
    "('{\"query\": \"weather in Paris\", \"lang\": \"en\"}') or as an array in that\n"
    "order. Give every parameter the key uses, defaults included. Scope, sensitive\n"
    "and key parameters and the normalisation come from [tools.T] of the\n"
    "configuration; the options below give them when the code sets them.\n"
    "\n"
    "options:\n"
    "  --store S             only this configured store (default: every shared one)\n"
    "  --tool-version V      T's version (default: [tools.T].version, else \"1\")\n"
    "  --scope P             the parameter that scopes results (tenant, user)\n"
    "  --sensitive P,...     parameters never keyed (masked here)\n"
    "  --key-params P,...    the parameters that form the key\n"
    "  --normalization N     none | nfc | nfkc | nfkc_casefold\n"
    "  --json                one JSON object instead of the text\n"
    "  --config FILE         the configuration (default: $TOOLOPS_CONFIG, else\n"
    "                        ./toolops.toml if present)\n"
    "\n"
    "exit status: 0 an entry was found, 1 none is cached (or a store could not be\n"
    "opened), 2 bad usage.\n";

std::vector<std::string> ToolPrefixes(const std::string& tool, const std::string& version) {
  std::vector<std::string> out;
  for (bool normalized : {false, true}) {
    std::string prefix = ToolKeyPrefix(tool, version, normalized);
    if (!prefix.empty()) out.push_back(std::move(prefix));
  }
  return out;
}

std::string ToolVersion(const Config& config, const std::string& tool,
                        const std::optional<std::string>& given) {
  if (given) return *given;
  if (const ToolConfig* t = config.FindTool(tool)) return t->version;
  return "1";
}

namespace {

Result<Value> ToValue(const nlohmann::ordered_json& j, int depth = 0) {
  if (depth > 64) return Status(StatusCode::kInvalidArgument, "--args is nested too deeply");
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return Value();
    case nlohmann::ordered_json::value_t::boolean:
      return Value(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Value(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned:
      return Value(j.get<uint64_t>());
    case nlohmann::ordered_json::value_t::number_float:
      return Value(j.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return Value(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      Value::List list;
      for (const auto& item : j) {
        Result<Value> v = ToValue(item, depth + 1);
        if (!v.ok()) return v;
        list.push_back(std::move(v).value());
      }
      return Value(std::move(list));
    }
    case nlohmann::ordered_json::value_t::object: {
      Value::Map map;
      for (auto it = j.begin(); it != j.end(); ++it) {
        Result<Value> v = ToValue(it.value(), depth + 1);
        if (!v.ok()) return v;
        map.emplace_back(it.key(), std::move(v).value());
      }
      return Value(std::move(map));
    }
    default:
      return Status(StatusCode::kInvalidArgument, "--args holds a value JSON keys cannot hold");
  }
}

bool Listed(const std::vector<std::string>& list, const std::string& name) {
  return std::find(list.begin(), list.end(), name) != list.end();
}

std::vector<std::string> SplitList(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string item = text.substr(start, comma - start);
    if (!item.empty()) out.push_back(item);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

// Asks on the terminal; false when the answer is not yes.
bool Confirm(const std::string& question) {
  std::fprintf(stderr, "%s [y/N] ", question.c_str());
  std::fflush(stderr);
  std::string answer;
  if (!std::getline(std::cin, answer)) return false;
  return answer == "y" || answer == "Y" || answer == "yes";
}

std::string WallTime(TimePoint steady, TimePoint steady_now) {
  if (steady == TimePoint::max()) return "never";
  auto wall = std::chrono::system_clock::now() +
              std::chrono::duration_cast<std::chrono::system_clock::duration>(steady - steady_now);
  std::time_t t = std::chrono::system_clock::to_time_t(wall);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof(buffer), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

}  // namespace

Result<std::string> CallKey(const std::string& tool, const std::string& version,
                            const std::string& args_json, const CallShape& shape) {
  nlohmann::ordered_json parsed = nlohmann::ordered_json::parse(args_json, nullptr, false);
  if (parsed.is_discarded()) {
    return Status(StatusCode::kInvalidArgument,
                  "--args is not JSON; give an object of the parameters in the tool's order, "
                  "such as '{\"query\": \"weather in Paris\"}'");
  }
  // (name, value) in parameter order; an array has no names.
  std::vector<std::pair<std::string, nlohmann::ordered_json>> params;
  if (parsed.is_object()) {
    for (auto it = parsed.begin(); it != parsed.end(); ++it) params.emplace_back(it.key(), *it);
  } else if (parsed.is_array()) {
    if (!shape.scope_param.empty() || !shape.sensitive_params.empty() ||
        !shape.key_params.empty()) {
      return Status(StatusCode::kInvalidArgument,
                    "--args is an array, but the tool names parameters (scope, sensitive or key "
                    "parameters); give an object of the parameters by name");
    }
    for (const auto& v : parsed) params.emplace_back("", v);
  } else {
    return Status(StatusCode::kInvalidArgument,
                  "--args must be a JSON object (or array) of the call's parameters");
  }
  if (!shape.scope_param.empty() && std::none_of(params.begin(), params.end(), [&](const auto& p) {
        return p.first == shape.scope_param;
      })) {
    return Status(StatusCode::kInvalidArgument,
                  "--args has no value for the scope parameter '" + shape.scope_param + "'");
  }
  std::string key = ToolKeyPrefix(tool, version, shape.normalization != TextNormalization::kNone);
  ArgWriter writer(&key, shape.normalization);
  // The scope first, then the key parameters in order (as the core keys).
  for (int pass = 0; pass < 2; ++pass) {
    for (const auto& [name, json] : params) {
      bool scope = !name.empty() && name == shape.scope_param;
      bool keyed = !scope && !Listed(shape.sensitive_params, name) &&
                   (shape.key_params.empty() || Listed(shape.key_params, name));
      if ((pass == 0 && !scope) || (pass == 1 && !keyed)) continue;
      Result<Value> v = ToValue(json);
      if (!v.ok()) return v.status();
      v->Encode(writer);
    }
  }
  if (Status s = writer.Finish(); !s.ok()) return s;
  return key;
}

namespace {

struct OpenedStore {
  const StoreConfig* config;
  std::unique_ptr<Store> store;
};

// Opens the shared stores selected; memory stores are reported skipped.
// *failed is set when one could not be opened.
std::vector<OpenedStore> OpenShared(const std::vector<const StoreConfig*>& selected, bool quiet,
                                    bool* failed) {
  std::vector<OpenedStore> out;
  for (const StoreConfig* s : selected) {
    if (!s->shared()) {
      if (!quiet) {
        std::fprintf(stderr,
                     "toolops: skipping store '%s' (memory): it lives inside each agent process\n",
                     s->name.c_str());
      }
      continue;
    }
    Result<std::unique_ptr<Store>> store = s->Open();
    if (!store.ok()) {
      std::fprintf(stderr, "toolops: %s\n", std::string(store.status().message()).c_str());
      *failed = true;
      continue;
    }
    out.push_back({s, std::move(store).value()});
  }
  return out;
}

}  // namespace

int ClearMain(const std::vector<std::string>& args) {
  Options options({"--yes", "-y", "-h", "--help"}, {"--tool", "--tool-version", "--config"});
  if (std::string error = options.Parse(args); !error.empty()) {
    return UsageError(error, kClearUsage);
  }
  if (options.Has("-h") || options.Has("--help")) {
    std::fputs(kClearUsage, stdout);
    return kExitOk;
  }
  if (options.positional().size() > 1) {
    return UsageError("clear takes at most one STORE", kClearUsage);
  }
  if (options.Has("--tool-version") && !options.Has("--tool")) {
    return UsageError("--tool-version needs --tool", kClearUsage);
  }
  Result<Config> config = LoadCliConfig(options.Get("--config"));
  if (!config.ok()) return Fail(std::string(config.status().message()), kExitUsage);
  std::optional<std::string> only;
  if (!options.positional().empty()) only = options.positional()[0];
  Result<std::vector<const StoreConfig*>> selected = SelectStores(*config, only);
  if (!selected.ok()) return Fail(std::string(selected.status().message()), kExitUsage);
  if (selected->empty()) {
    return Fail("no store is configured" + (config->path.empty()
                                                ? std::string(" (no configuration file was found)")
                                                : " in " + config->path),
                kExitUsage);
  }
  const std::optional<std::string> tool = options.Get("--tool");
  std::string what = tool ? "the entries of tool '" + *tool + "'" : "every entry";
  std::string where;
  for (const StoreConfig* s : *selected) {
    if (s->shared()) where += (where.empty() ? "" : ", ") + s->name;
  }
  if (where.empty()) {
    return Fail(
        "the selected stores are memory stores, which live inside each agent process; "
        "clear them there (ToolCore::ClearCache, cache_manager.clear)");
  }
  if (!options.Has("--yes") && !options.Has("-y")) {
    if (isatty(STDIN_FILENO) != 1) {
      return UsageError(
          "refusing to clear without confirmation: stdin is not a terminal; pass "
          "--yes",
          kClearUsage);
    }
    if (!Confirm("Remove " + what + " from " + where + "?")) {
      return Fail("not confirmed; nothing was removed", kExitUsage);
    }
  }
  bool failed = false;
  std::vector<OpenedStore> stores = OpenShared(*selected, false, &failed);
  std::vector<std::string> prefixes;
  if (tool)
    prefixes = ToolPrefixes(*tool, ToolVersion(*config, *tool, options.Get("--tool-version")));
  for (OpenedStore& s : stores) {
    size_t erased = 0;
    if (tool) {
      for (const std::string& prefix : prefixes) erased += s.store->EraseByPrefix(prefix);
    } else {
      erased = s.store->EraseByPrefix("");
    }
    std::printf("%s: removed %zu entr%s\n", s.config->name.c_str(), erased,
                erased == 1 ? "y" : "ies");
  }
  return failed ? kExitFailed : kExitOk;
}

int InvalidateMain(const std::vector<std::string>& args) {
  Options options({"-h", "--help"}, {"--tag", "--store", "--config"});
  if (std::string error = options.Parse(args); !error.empty()) {
    return UsageError(error, kInvalidateUsage);
  }
  if (options.Has("-h") || options.Has("--help")) {
    std::fputs(kInvalidateUsage, stdout);
    return kExitOk;
  }
  if (!options.positional().empty()) {
    return UsageError("invalidate takes no arguments (got '" + options.positional()[0] + "')",
                      kInvalidateUsage);
  }
  std::vector<std::string> tags = options.All("--tag");
  if (tags.empty()) return UsageError("invalidate needs --tag T", kInvalidateUsage);
  Result<Config> config = LoadCliConfig(options.Get("--config"));
  if (!config.ok()) return Fail(std::string(config.status().message()), kExitUsage);
  Result<std::vector<const StoreConfig*>> selected = SelectStores(*config, options.Get("--store"));
  if (!selected.ok()) return Fail(std::string(selected.status().message()), kExitUsage);

  // Tools tagged in the configuration.
  std::vector<std::string> tagged_prefixes;
  std::vector<std::string> tool_names;
  for (const auto& [name, tool] : config->tools) {
    bool carries = std::any_of(tags.begin(), tags.end(),
                               [&](const std::string& t) { return Listed(tool.tags, t); });
    if (!carries) continue;
    tool_names.push_back(name);
    for (std::string& p : ToolPrefixes(name, tool.version)) tagged_prefixes.push_back(std::move(p));
  }
  bool failed = false;
  std::vector<OpenedStore> stores = OpenShared(*selected, true, &failed);
  bool any_tool = !tool_names.empty();
  for (OpenedStore& s : stores) {
    std::vector<std::string> prefixes = tagged_prefixes;
    for (const std::string& tag : tags) {
      for (std::string& p : TaggedToolPrefixes(*s.store, tag)) {
        any_tool = true;
        prefixes.push_back(std::move(p));
      }
    }
    std::sort(prefixes.begin(), prefixes.end());
    prefixes.erase(std::unique(prefixes.begin(), prefixes.end()), prefixes.end());
    size_t erased = 0;
    for (const std::string& prefix : prefixes) erased += s.store->EraseByPrefix(prefix);

    // Entries tagged by single calls.
    if (CallTagIndex* index = CallTagIndexOf(*s.store)) {
      for (const std::string& tag : tags) {
        Result<size_t> n = index->EraseTagged(tag);
        if (!n.ok()) {
          std::fprintf(stderr, "toolops: %s: %s\n", s.config->name.c_str(),
                       std::string(n.status().message()).c_str());
          failed = true;
          continue;
        }
        if (*n > 0) any_tool = true;
        erased += *n;
      }
    }
    std::printf("%s: removed %zu entr%s\n", s.config->name.c_str(), erased,
                erased == 1 ? "y" : "ies");
  }
  if (stores.empty() && !failed) {
    return Fail(
        "no shared store is configured; tagged entries in memory stores live inside each "
        "agent process",
        kExitFailed);
  }
  if (!any_tool) {
    std::string list;
    for (const std::string& t : tags) list += (list.empty() ? "'" : ", '") + t + "'";
    return Fail("no tool or entry carries the tag " + list +
                " (in the configuration's tools.*.tags or recorded in the stores)");
  }
  return failed ? kExitFailed : kExitOk;
}

int InspectMain(const std::vector<std::string>& args) {
  Options options({"--json", "-h", "--help"},
                  {"--tool", "--args", "--store", "--tool-version", "--scope", "--sensitive",
                   "--key-params", "--normalization", "--config"});
  if (std::string error = options.Parse(args); !error.empty()) {
    return UsageError(error, kInspectUsage);
  }
  if (options.Has("-h") || options.Has("--help")) {
    std::fputs(kInspectUsage, stdout);
    return kExitOk;
  }
  if (!options.positional().empty()) {
    return UsageError("inspect takes no arguments (got '" + options.positional()[0] + "')",
                      kInspectUsage);
  }
  std::optional<std::string> tool = options.Get("--tool");
  std::optional<std::string> args_json = options.Get("--args");
  if (!tool || !args_json) return UsageError("inspect needs --tool and --args", kInspectUsage);
  Result<Config> config = LoadCliConfig(options.Get("--config"));
  if (!config.ok()) return Fail(std::string(config.status().message()), kExitUsage);

  CallShape shape;
  if (const ToolConfig* t = config->FindTool(*tool)) {
    ToolPolicy policy;
    t->ApplyTo(&policy);
    shape.scope_param = policy.scope_param;
    shape.sensitive_params = policy.sensitive_params;
    shape.key_params = policy.cache.key_params;
    shape.normalization = policy.cache.normalization;
  }
  if (auto v = options.Get("--scope")) shape.scope_param = *v;
  if (auto v = options.Get("--sensitive")) shape.sensitive_params = SplitList(*v);
  if (auto v = options.Get("--key-params")) shape.key_params = SplitList(*v);
  if (auto v = options.Get("--normalization")) {
    static const std::pair<const char*, TextNormalization> kModes[] = {
        {"none", TextNormalization::kNone},
        {"nfc", TextNormalization::kNfc},
        {"nfkc", TextNormalization::kNfkc},
        {"nfkc_casefold", TextNormalization::kNfkcCasefold}};
    auto it = std::find_if(std::begin(kModes), std::end(kModes),
                           [&](const auto& m) { return *v == m.first; });
    if (it == std::end(kModes)) {
      return UsageError("--normalization is none, nfc, nfkc or nfkc_casefold (got '" + *v + "')",
                        kInspectUsage);
    }
    shape.normalization = it->second;
  }
  const std::string version = ToolVersion(*config, *tool, options.Get("--tool-version"));
  Result<std::string> key = CallKey(*tool, version, *args_json, shape);
  if (!key.ok()) return UsageError(std::string(key.status().message()), kInspectUsage);

  // The arguments as shown: sensitive values masked.
  nlohmann::ordered_json shown = nlohmann::ordered_json::parse(*args_json, nullptr, false);
  if (shown.is_object()) {
    for (auto it = shown.begin(); it != shown.end(); ++it) {
      if (Listed(shape.sensitive_params, it.key())) it.value() = "***";
    }
  }

  Result<std::vector<const StoreConfig*>> selected = SelectStores(*config, options.Get("--store"));
  if (!selected.ok()) return Fail(std::string(selected.status().message()), kExitUsage);
  bool failed = false;
  std::vector<OpenedStore> stores = OpenShared(*selected, options.Has("--json"), &failed);
  if (stores.empty() && !failed) {
    return Fail("no shared store is configured" +
                    (config->path.empty() ? std::string(" (no configuration file was found)")
                                          : " in " + config->path) +
                    "; memory stores live inside each agent process",
                kExitFailed);
  }
  nlohmann::json entries = nlohmann::json::array();
  bool found_any = false;
  Clock* clock = RealClock();
  const KeyRef ref = KeyRef::Of(*key);
  std::string text = "tool " + *tool + " (version " + version + ")\nargs " + shown.dump() + "\n";
  for (OpenedStore& s : stores) {
    const std::string digest = StoreKeyDigest(s.config->key_namespace(), *key);
    TimePoint now = clock->Now();
    std::optional<StoredValue> v = s.store->Get(ref, now);
    nlohmann::json e = {{"store", s.config->name},
                        {"type", s.config->type_name},
                        {"digest", digest},
                        {"found", v.has_value()}};
    text += "\n" + s.config->name + " (" + s.config->type_name + ")\n  digest  " + digest + "\n";
    if (!v) {
      text += "  entry   none\n";
    } else {
      found_any = true;
      bool fresh = now < v->fresh_until;
      e["state"] = fresh ? "fresh" : "stale";
      e["fresh_until"] = WallTime(v->fresh_until, now);
      e["stale_until"] = WallTime(v->stale_until, now);
      e["bytes"] = v->value.size();
      text += std::string("  entry   ") + (fresh ? "fresh" : "stale") + ", " +
              std::to_string(v->value.size()) + " bytes\n  fresh   until " +
              WallTime(v->fresh_until, now) + "\n  stale   until " + WallTime(v->stale_until, now) +
              "\n";
    }
    entries.push_back(std::move(e));
  }
  if (options.Has("--json")) {
    nlohmann::json out = {
        {"tool", *tool}, {"version", version}, {"args", shown}, {"entries", std::move(entries)}};
    std::fputs((out.dump(2) + "\n").c_str(), stdout);
  } else {
    std::fputs(text.c_str(), stdout);
  }
  if (failed) return kExitFailed;
  return found_any ? kExitOk : kExitFailed;
}

}  // namespace toolops::cli

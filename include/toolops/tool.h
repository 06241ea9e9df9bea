// include/toolops/tool.h
//
// Wrap a tool once; every call through the wrapper is cached, coalesced,
// retried and guarded as its policy says.
//
//   auto search = toolops::Readonly({"web_search", "1", {"query"}}, policy,
//                                   [](std::string q) { return Fetch(q); });
//   std::string page = search("weather in Paris");   // same signature
//   toolops::Result<std::string> r = search.Call("weather in Paris");  // no throw
//
// A tool function returns R, or Result<R> to report classified errors; it may
// also throw ToolError (classified) or any exception (code kUnknown). The
// wrapper's operator() has the tool's parameters and returns R, throwing
// ToolError on failure; Call() returns Result<R> and never throws.
//
// Arguments become the cache key through ArgCodec (args.h); results are
// stored as Bytes through ResultCodec below (std::string, Bytes, arithmetic
// types and bool built in; other types define ToolopsEncodeResult and
// ToolopsDecodeResult next to the type).
//
// A Tool is a cheap handle: copies share one core (cache partition, breaker,
// limiter, budget, counters). Safe to call from many threads at once.

#ifndef TOOLOPS_TOOL_H_
#define TOOLOPS_TOOL_H_

#include <algorithm>
#include <charconv>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "toolops/args.h"
#include "toolops/bytes.h"
#include "toolops/environment.h"
#include "toolops/policy.h"
#include "toolops/status.h"
#include "toolops/tool_core.h"
#include "toolops/tracing.h"

namespace toolops {

// How a result type becomes Bytes and back. Specialise it, or define
//   Bytes ToolopsEncodeResult(const T&);
//   bool ToolopsDecodeResult(const Bytes&, T*);
// in T's namespace.
template <typename T, typename = void>
struct ResultCodec {
  static Bytes Encode(const T& value) { return ToolopsEncodeResult(value); }
  static Result<T> Decode(const Bytes& bytes) {
    T value;
    if (!ToolopsDecodeResult(bytes, &value)) {
      return Status(StatusCode::kDataLoss, "a cached value could not be decoded", Guard::kCodec);
    }
    return value;
  }
};

template <>
struct ResultCodec<std::string> {
  static Bytes Encode(const std::string& value) { return Bytes::Copy(value); }
  static Result<std::string> Decode(const Bytes& bytes) { return bytes.ToString(); }
};

template <>
struct ResultCodec<Bytes> {
  static Bytes Encode(const Bytes& value) { return value; }
  static Result<Bytes> Decode(const Bytes& bytes) { return bytes; }
};

// Numbers are stored as text so that entries read the same on any machine.
template <typename T>
struct ResultCodec<T, std::enable_if_t<std::is_arithmetic_v<T> && !std::is_same_v<T, bool>>> {
  static Bytes Encode(T value) {
    char buffer[64];
    auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value);
    return Bytes::Copy(std::string_view(buffer, end - buffer));
  }
  static Result<T> Decode(const Bytes& bytes) {
    T value{};
    auto [end, ec] = std::from_chars(bytes.data(), bytes.data() + bytes.size(), value);
    if (ec != std::errc() || end != bytes.data() + bytes.size()) {
      return Status(StatusCode::kDataLoss, "a cached number could not be decoded", Guard::kCodec);
    }
    return value;
  }
};

template <>
struct ResultCodec<bool> {
  static Bytes Encode(bool value) { return Bytes::Copy(value ? "1" : "0"); }
  static Result<bool> Decode(const Bytes& bytes) {
    if (bytes.view() == "1") return true;
    if (bytes.view() == "0") return false;
    return Status(StatusCode::kDataLoss, "a cached bool could not be decoded", Guard::kCodec);
  }
};

namespace internal {

template <typename T>
struct UnwrapResult {
  using type = T;
};
template <typename T>
struct UnwrapResult<Result<T>> {
  using type = T;
};

template <typename F>
struct FunctionTraits : FunctionTraits<decltype(&std::decay_t<F>::operator())> {};
template <typename R, typename... Args>
struct FunctionTraits<R (*)(Args...)> {
  using Return = R;
  static constexpr size_t kArity = sizeof...(Args);
  using Signature = typename UnwrapResult<R>::type(Args...);
};
template <typename R, typename... Args>
struct FunctionTraits<R(Args...)> : FunctionTraits<R (*)(Args...)> {};
template <typename C, typename R, typename... Args>
struct FunctionTraits<R (C::*)(Args...)> : FunctionTraits<R (*)(Args...)> {};
template <typename C, typename R, typename... Args>
struct FunctionTraits<R (C::*)(Args...) const> : FunctionTraits<R (*)(Args...)> {};
template <typename C, typename R, typename... Args>
struct FunctionTraits<R (C::*)(Args...) noexcept> : FunctionTraits<R (*)(Args...)> {};
template <typename C, typename R, typename... Args>
struct FunctionTraits<R (C::*)(Args...) const noexcept> : FunctionTraits<R (*)(Args...)> {};

// Key buffers reused per thread, one per nesting level (a tool may call
// another wrapped tool on the same thread while its own key is in use).
// Past kDepth levels, a lease owns a fresh string. A buffer remembers whose
// key prefix it starts with, so that the next call of the same tool on this
// thread keeps the prefix instead of copying it again.
class KeyBufferLease {
 public:
  KeyBufferLease() : level_(Acquire()) {}
  ~KeyBufferLease() {
    if (level_ == &overflow_) return;
    --Buffers().depth;
  }
  KeyBufferLease(const KeyBufferLease&) = delete;
  KeyBufferLease& operator=(const KeyBufferLease&) = delete;

  // The buffer, holding exactly `prefix`, the key prefix of the core with
  // id `core_id` (ToolCore::id()). The caller may append to it.
  std::string& StartKey(const std::string& prefix, uint64_t core_id) {
    std::string& key = level_->buffer;
    if (level_->core_id == core_id) {
      key.erase(prefix.size());  // Only what was appended after the prefix goes.
    } else {
      key.assign(prefix);
      level_->core_id = core_id;
    }
    return key;
  }

 private:
  static constexpr size_t kDepth = 4;
  struct Level {
    std::string buffer;
    // The core whose key prefix `buffer` starts with; 0 for none. Appending
    // never changes the prefix, so this stays true until the next StartKey.
    uint64_t core_id = 0;
  };
  struct PerThread {
    Level levels[kDepth];
    size_t depth = 0;
  };
  static PerThread& Buffers() {
    thread_local PerThread per_thread;
    return per_thread;
  }
  Level* Acquire() {
    PerThread& t = Buffers();
    if (t.depth == kDepth) return &overflow_;
    return &t.levels[t.depth++];
  }

  Level overflow_;
  Level* const level_;
};

// kSemantic: a key parameter whose text is also matched by meaning.
enum class ParamRole : uint8_t { kKey, kScope, kSkip, kSemantic };

// What every wrapper holds besides the function: the shared core and the
// role of each parameter in the key.
struct WrappedCore {
  std::shared_ptr<ToolCore> core;
  std::vector<ParamRole> roles;
};

// Validates and builds the core of a tool whose function takes `arity`
// parameters. Returns InvalidArgument (guard kPolicy) for a bad spec or
// policy, including a spec that names a different number of parameters.
Result<WrappedCore> WrapCore(ToolSpec spec, ToolPolicy policy, size_t arity, Environment env);

// The policy of a read-only tool, and of a side effect (never cached or
// coalesced).
ToolPolicy AsReadonly(ToolPolicy policy);
ToolPolicy AsSideEffect(ToolPolicy policy);

// Appends the canonical encoding of a call's key arguments to `key`: the
// scope first (so no two scopes ever share an entry), then the key params.
// Returns the writer's error (a map with duplicate keys, a string too large to
// normalise, a user encoder that misused the writer); the key must then not
// be used, and the call goes upstream uncached.
template <typename... Args>
Status AppendKeyArgs(std::string* key, TextNormalization normalization,
                     const std::vector<ParamRole>& roles, const Args&... args) {
  ArgWriter writer(key, normalization);
  size_t i = 0;
  ((roles[i++] == ParamRole::kScope ? EncodeArg(writer, args) : void()), ...);
  i = 0;
  ((roles[i] == ParamRole::kKey || roles[i] == ParamRole::kSemantic ? EncodeArg(writer, args)
                                                                    : void(),
    ++i),
   ...);
  return writer.Finish();
}

// For the semantic cache: the partition (scope and the key arguments matched
// exactly) and the text matched by meaning (the semantic arguments, joined by
// newlines).
template <typename... Args>
Status AppendSemanticParts(std::string* partition, std::string* text,
                           TextNormalization normalization, const std::vector<ParamRole>& roles,
                           const Args&... args) {
  ArgWriter writer(partition, normalization);
  size_t i = 0;
  ((roles[i++] == ParamRole::kScope ? EncodeArg(writer, args) : void()), ...);
  i = 0;
  ((roles[i++] == ParamRole::kKey ? EncodeArg(writer, args) : void()), ...);
  i = 0;
  auto add_text = [&](const auto& arg) {
    if constexpr (std::is_convertible_v<const std::decay_t<decltype(arg)>&, std::string_view>) {
      if (!text->empty()) text->push_back('\n');
      text->append(std::string_view(arg));
    }
  };
  ((roles[i++] == ParamRole::kSemantic ? add_text(args) : void()), ...);
  return writer.Finish();
}

}  // namespace internal

template <typename Signature>
class Tool;

template <typename R, typename... Args>
class Tool<R(Args...)> {
 public:
  using Function = std::function<Result<R>(Args...)>;

  // Use Readonly(), SideEffect() or MakeTool().
  Tool(std::shared_ptr<ToolCore> core, std::shared_ptr<const Function> fn,
       std::vector<internal::ParamRole> roles)
      : core_(std::move(core)),
        fn_(std::move(fn)),
        roles_(std::move(roles)),
        key_prefix_(&core_->key_prefix()),
        core_id_(core_->id()),
        normalization_(core_->policy().cache.normalization),
        keyed_(core_->keyed()),
        semantic_(core_->semantic()) {}

  // Calls the tool through every layer of its policy. Throws ToolError with
  // the status (code, guard, message) when the call fails.
  R operator()(Args... args) const { return Call(std::forward<Args>(args)...).ValueOrThrow(); }

  // The same, returning the error instead of throwing.
  Result<R> Call(Args... args) const {
    auto make_upstream = [&]() -> Upstream {
      // Only on a miss: copy the arguments so that an attempt can outlive
      // this frame (a timed attempt runs on the executor).
      return [fn = fn_, tuple = std::tuple<std::decay_t<Args>...>(args...)](
                 const CallContext&) -> Result<Bytes> {
        Result<R> r = std::apply(*fn, tuple);
        if (!r.ok()) return r.status();
        return ResultCodec<R>::Encode(r.value());
      };
    };
    if (!keyed_) return Decode(core_->Call(KeyRef{}, make_upstream));
    internal::KeyBufferLease lease;
    std::string& key = lease.StartKey(*key_prefix_, core_id_);
    Status encoded = internal::AppendKeyArgs(&key, normalization_, roles_, args...);
    if (!encoded.ok()) return Decode(core_->CallWithoutKey(make_upstream));
    const KeyRef ref = KeyRef::Of(key);
    // The hit path: a fresh entry ends the call here, before anything else
    // (semantic parts, upstream closure) is built.
    if (Bytes hit; core_->TryFreshHit(ref, &hit)) return Decode(std::move(hit));
    // For traces that record arguments; rendered only if this call is traced.
    auto describe = [&] {
      return internal::DescribeArgs(core_->spec().params, core_->policy().sensitive_params,
                                    args...);
    };
    FunctionRef<std::string()> describe_ref(describe);
    internal::ScopedArgs scoped_args(&describe_ref);
    if (semantic_) {
      std::string partition = *key_prefix_;
      std::string text;
      if (internal::AppendSemanticParts(&partition, &text, normalization_, roles_, args...).ok()) {
        SemanticQuery query{partition, text};
        return Decode(core_->Call(ref, &query, make_upstream));
      }
    }
    return Decode(core_->Call(ref, make_upstream));
  }

  // A value served when the call fails after every other layer. Applies to
  // every copy of this tool; set it right after wrapping.
  void SetFallback(R value) {
    Bytes encoded = ResultCodec<R>::Encode(value);
    core_->SetFallback([encoded](const Status&) -> Result<Bytes> { return encoded; });
  }
  // A function of the final error that may produce a value (or fail too).
  void SetFallback(std::function<Result<R>(const Status&)> fallback) {
    core_->SetFallback([fallback = std::move(fallback)](const Status& error) -> Result<Bytes> {
      Result<R> r = fallback(error);
      if (!r.ok()) return r.status();
      return ResultCodec<R>::Encode(r.value());
    });
  }

  // InvalidArgument naming the first parameter matched by meaning whose type
  // is not text (convertible to std::string_view).
  static Status CheckSemanticTypes(const ToolSpec& spec,
                                   const std::vector<internal::ParamRole>& roles) {
    constexpr bool kText[] = {std::is_convertible_v<const std::decay_t<Args>&, std::string_view>...,
                              false};
    for (size_t i = 0; i < sizeof...(Args) && i < roles.size(); ++i) {
      if (roles[i] == internal::ParamRole::kSemantic && !kText[i]) {
        return Status(StatusCode::kInvalidArgument,
                      "tool '" + spec.name + "': cache.semantic.params names '" + spec.params[i] +
                          "', which is not a text parameter",
                      Guard::kPolicy);
      }
    }
    return Status();
  }

  StatsSnapshot stats() const { return core_->stats(); }
  const ToolSpec& spec() const { return core_->spec(); }
  ToolCore& core() const { return *core_; }

 private:
  static Result<R> Decode(Bytes bytes) {
    if constexpr (std::is_same_v<R, Bytes>) {
      return bytes;  // No decode and no refcount round trip.
    } else {
      return ResultCodec<R>::Decode(bytes);
    }
  }
  static Result<R> Decode(Result<Bytes> bytes) {
    if (!bytes.ok()) return bytes.status();
    return Decode(std::move(bytes).value());
  }

  std::shared_ptr<ToolCore> core_;
  std::shared_ptr<const Function> fn_;
  std::vector<internal::ParamRole> roles_;
  // Read once from the core, which outlives every copy of this handle.
  const std::string* key_prefix_;
  uint64_t core_id_;
  TextNormalization normalization_;
  bool keyed_;
  bool semantic_;  // The policy matches some parameters by meaning.
};

// Wraps `fn` with `policy`. Returns InvalidArgument (guard kPolicy) for a bad
// spec or policy; never throws.
template <typename F>
auto MakeTool(ToolSpec spec, ToolPolicy policy, F fn, Environment env = Environment())
    -> Result<Tool<typename internal::FunctionTraits<F>::Signature>> {
  using Traits = internal::FunctionTraits<F>;
  using Wrapped = Tool<typename Traits::Signature>;
  using Function = typename Wrapped::Function;
  Result<internal::WrappedCore> made =
      internal::WrapCore(std::move(spec), std::move(policy), Traits::kArity, env);
  if (!made.ok()) return made.status();
  if (Status s = Wrapped::CheckSemanticTypes(made->core->spec(), made->roles); !s.ok()) return s;
  auto function = std::make_shared<const Function>(
      [fn = std::move(fn)](auto&&... args)
          -> Result<typename internal::UnwrapResult<typename Traits::Return>::type> {
        return fn(std::forward<decltype(args)>(args)...);
      });
  return Wrapped(std::move(made->core), std::move(function), std::move(made->roles));
}

// A read of the outside world: cached, coalesced, retried. Throws ToolError
// (InvalidArgument, guard kPolicy) for a bad spec or policy, at wrap time.
template <typename F>
auto Readonly(ToolSpec spec, ToolPolicy policy, F fn, Environment env = Environment()) {
  return MakeTool(std::move(spec), internal::AsReadonly(std::move(policy)), std::move(fn), env)
      .ValueOrThrow();
}

// A write (payment, message, ...): never cached or coalesced, retried only
// when policy.idempotent is true; guarded by the breaker, the timeouts and the
// concurrency limit. Throws ToolError for a bad spec or policy, at wrap time.
template <typename F>
auto SideEffect(ToolSpec spec, ToolPolicy policy, F fn, Environment env = Environment()) {
  return MakeTool(std::move(spec), internal::AsSideEffect(std::move(policy)), std::move(fn), env)
      .ValueOrThrow();
}

}  // namespace toolops

#endif  // TOOLOPS_TOOL_H_

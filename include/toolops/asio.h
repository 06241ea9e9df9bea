// include/toolops/asio.h
//
// Asynchronous tools as C++20 coroutines on Asio (standalone Asio, awaitable).
//
//   auto search = toolops::ReadonlyAsync(
//       {"web_search", "1", {"query"}}, policy,
//       [&](std::string q) -> asio::awaitable<std::string> { co_return co_await Fetch(q); });
//   std::string page = co_await search("weather in Paris");       // throws ToolError
//   toolops::Result<std::string> r = co_await search.Call("...");  // never throws
//
// The same engine as the blocking form: a fresh hit completes without
// suspending; misses coalesce with blocking and asynchronous callers alike.
// Waiting (backoff, limiter slots, flights of other callers, attempt time
// limits) suspends the coroutine on Asio timers and channels; no thread
// blocks. Waits use real time (steady_timer) even when the environment has a
// FakeClock; the engine's decisions still read the injected clock.
//
// Cancellation: a caller that is cancelled (or whose own timeout fires) stops
// waiting and leaves; the upstream call it led keeps running for the other
// waiters and is cached, because the leader's work runs in its own detached
// coroutine. An attempt that exceeds its time limit is abandoned the same way
// (CallContext::abandoned is set) and its late result is dropped.
//
// AsyncTool is a cheap handle; copies share one core. Safe to use from many
// coroutines and threads at once.

#ifndef TOOLOPS_ASIO_H_
#define TOOLOPS_ASIO_H_

#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/use_awaitable.hpp>

#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "toolops/tool.h"

namespace toolops {

// One upstream attempt of an asynchronous tool, at the level of bytes.
using AsyncUpstream = std::function<asio::awaitable<Result<Bytes>>(const CallContext&)>;

// What a semantic cache matches for one asynchronous call (SemanticQuery,
// owned: the leader may outlive the caller's frame).
struct AsyncSemanticQuery {
  std::string partition;
  std::string text;
};

// Runs one call of `core` after TryFreshHit() missed. `key` is the full
// canonical key; empty when !core->keyed() or when the arguments could not be
// encoded (the call then goes upstream without cache or coalescing).
// `semantic`, when set and the tool has a semantic cache, is looked up by the
// leader after an exact miss.
asio::awaitable<Result<Bytes>> CallAsync(
    std::shared_ptr<ToolCore> core, std::string key, std::shared_ptr<const AsyncUpstream> upstream,
    std::shared_ptr<const AsyncSemanticQuery> semantic = nullptr);

namespace internal {

template <typename T>
struct AwaitableValue;
template <typename T>
struct AwaitableValue<asio::awaitable<T>> {
  using type = typename UnwrapResult<T>::type;
};

template <typename F>
struct AsyncTraits : AsyncTraits<decltype(&std::decay_t<F>::operator())> {};
template <typename R, typename... Args>
struct AsyncTraits<R (*)(Args...)> {
  using Value = typename AwaitableValue<R>::type;
  using Signature = Value(Args...);
  static constexpr size_t kArity = sizeof...(Args);
};
template <typename C, typename R, typename... Args>
struct AsyncTraits<R (C::*)(Args...)> : AsyncTraits<R (*)(Args...)> {};
template <typename C, typename R, typename... Args>
struct AsyncTraits<R (C::*)(Args...) const> : AsyncTraits<R (*)(Args...)> {};

}  // namespace internal

template <typename Signature>
class AsyncTool;

template <typename R, typename... Args>
class AsyncTool<R(Args...)> {
 public:
  using Function = std::function<asio::awaitable<Result<R>>(Args...)>;

  // Use ReadonlyAsync(), SideEffectAsync() or MakeAsyncTool().
  AsyncTool(std::shared_ptr<ToolCore> core, std::shared_ptr<const Function> fn,
            std::vector<internal::ParamRole> roles)
      : core_(std::move(core)), fn_(std::move(fn)), roles_(std::move(roles)) {}

  // Calls the tool through every layer of its policy; throws ToolError.
  asio::awaitable<R> operator()(Args... args) const {
    Result<R> r = co_await Call(std::move(args)...);
    co_return std::move(r).ValueOrThrow();
  }

  // The same, returning the error instead of throwing.
  asio::awaitable<Result<R>> Call(Args... args) const {
    std::string key;
    std::shared_ptr<AsyncSemanticQuery> semantic;
    if (core_->keyed()) {
      TextNormalization normalization = core_->policy().cache.normalization;
      key.assign(core_->key_prefix());
      Status encoded = internal::AppendKeyArgs(&key, normalization, roles_, args...);
      if (!encoded.ok()) {
        key.clear();  // An empty key makes CallAsync go upstream uncached.
      } else if (Bytes hit; core_->TryFreshHit(KeyRef::Of(key), &hit)) {
        co_return ResultCodec<R>::Decode(hit);
      } else if (core_->semantic()) {
        semantic = std::make_shared<AsyncSemanticQuery>();
        semantic->partition = core_->key_prefix();
        if (!internal::AppendSemanticParts(&semantic->partition, &semantic->text, normalization,
                                           roles_, args...)
                 .ok()) {
          semantic.reset();
        }
      }
    }
    auto upstream = std::make_shared<const AsyncUpstream>(
        [fn = fn_, tuple = std::tuple<std::decay_t<Args>...>(args...)](const CallContext&) {
          return Attempt(fn, tuple);
        });
    Result<Bytes> bytes =
        co_await CallAsync(core_, std::move(key), std::move(upstream), std::move(semantic));
    if (!bytes.ok()) co_return bytes.status();
    co_return ResultCodec<R>::Decode(bytes.value());
  }

  void SetFallback(R value) {
    Bytes encoded = ResultCodec<R>::Encode(value);
    core_->SetFallback([encoded](const Status&) -> Result<Bytes> { return encoded; });
  }

  StatsSnapshot stats() const { return core_->stats(); }
  const ToolSpec& spec() const { return core_->spec(); }
  ToolCore& core() const { return *core_; }

 private:
  // A coroutine whose parameters (copied into its frame) keep the function
  // and the arguments alive for as long as the attempt runs.
  static asio::awaitable<Result<Bytes>> Attempt(std::shared_ptr<const Function> fn,
                                                std::tuple<std::decay_t<Args>...> args) {
    Result<R> r = co_await std::apply(*fn, args);
    if (!r.ok()) co_return r.status();
    co_return ResultCodec<R>::Encode(r.value());
  }

  std::shared_ptr<ToolCore> core_;
  std::shared_ptr<const Function> fn_;
  std::vector<internal::ParamRole> roles_;
};

// Wraps an asynchronous tool (a callable returning asio::awaitable<R> or
// asio::awaitable<Result<R>>). Returns InvalidArgument for a bad spec or
// policy; never throws.
template <typename F>
auto MakeAsyncTool(ToolSpec spec, ToolPolicy policy, F fn, Environment env = Environment())
    -> Result<AsyncTool<typename internal::AsyncTraits<F>::Signature>> {
  using Traits = internal::AsyncTraits<F>;
  using Wrapped = AsyncTool<typename Traits::Signature>;
  using Function = typename Wrapped::Function;
  using Value = typename Traits::Value;
  Result<internal::WrappedCore> made =
      internal::WrapCore(std::move(spec), std::move(policy), Traits::kArity, env);
  if (!made.ok()) return made.status();
  auto function = std::make_shared<const Function>(
      [fn = std::move(fn)](auto... args) -> asio::awaitable<Result<Value>> {
        co_return co_await fn(std::move(args)...);
      });
  return Wrapped(std::move(made->core), std::move(function), std::move(made->roles));
}

template <typename F>
auto ReadonlyAsync(ToolSpec spec, ToolPolicy policy, F fn, Environment env = Environment()) {
  return MakeAsyncTool(std::move(spec), internal::AsReadonly(std::move(policy)), std::move(fn), env)
      .ValueOrThrow();
}

template <typename F>
auto SideEffectAsync(ToolSpec spec, ToolPolicy policy, F fn, Environment env = Environment()) {
  return MakeAsyncTool(std::move(spec), internal::AsSideEffect(std::move(policy)), std::move(fn),
                       env)
      .ValueOrThrow();
}

}  // namespace toolops

#endif  // TOOLOPS_ASIO_H_

// include/toolops/function_ref.h
//
// FunctionRef<R(Args...)>: a non-owning reference to a callable, two words
// wide and never allocating. Used on the cache-hit path to pass "what to do on
// a miss" without building a std::function on every call. The referenced
// callable must outlive the FunctionRef (pass it down the stack only).

#ifndef TOOLOPS_FUNCTION_REF_H_
#define TOOLOPS_FUNCTION_REF_H_

#include <memory>
#include <type_traits>
#include <utility>

namespace toolops {

template <typename Signature>
class FunctionRef;

template <typename R, typename... Args>
class FunctionRef<R(Args...)> {
 public:
  template <typename F, typename = std::enable_if_t<!std::is_same_v<std::decay_t<F>, FunctionRef> &&
                                                    std::is_invocable_r_v<R, F&, Args...>>>
  FunctionRef(F&& f)  // NOLINT: implicit by design, like a function pointer
      : object_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
        call_([](void* object, Args... args) -> R {
          return (*static_cast<std::remove_reference_t<F>*>(object))(std::forward<Args>(args)...);
        }) {}

  R operator()(Args... args) const { return call_(object_, std::forward<Args>(args)...); }

 private:
  void* object_;
  R (*call_)(void*, Args...);
};

}  // namespace toolops

#endif  // TOOLOPS_FUNCTION_REF_H_

// python/binding/core_module.cc
//
// toolops._core: the C++ core as a Python extension (nanobind). Mechanical:
// it turns Python arguments into the core's canonical key, Python results
// into Bytes and back, Python exceptions into classified statuses, and runs
// the core's runners with the GIL released. Every choice a user makes
// (decorator arguments, codecs, which exceptions are retried) is settled by
// the Python facade (python/toolops) before it reaches this module.
//
// Threads and the GIL. The GIL is held on the hit path (a lock-free read of
// the memory store) and released for everything that may wait: the blocking
// runner, store I/O, the coroutine runner's thread. Python objects that C++
// keeps beyond one call live in PyRef holders, whose copies never touch a
// reference count and whose last owner takes the GIL to release them, so
// that a runner thread can drop them safely.
//
// Asynchronous tools run on the core's Asio coroutine runner, on one thread
// of this module. An upstream attempt is a task on the caller's event loop;
// its result comes back to the runner through an AttemptDone object, and the
// call's result reaches the caller's future with call_soon_threadsafe.

#include <Python.h>
#include <structmember.h>

#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <asio/co_spawn.hpp>
#include <asio/version.hpp>
#if ASIO_VERSION >= 102400
#include <asio/as_tuple.hpp>
#else
#include <asio/experimental/as_tuple.hpp>
#endif
#include <asio/experimental/concurrent_channel.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <atomic>
#include <cmath>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "observe/trace.h"
#include "store/tag_index.h"
#include "toolops/args.h"
#include "toolops/asio.h"
#include "toolops/config.h"
#include "toolops/embedder.h"
#include "toolops/log.h"
#include "toolops/metrics.h"
#include "toolops/secrets.h"
#include "toolops/tracing.h"
#include "toolops/postgres_store.h"
#include "toolops/redis_store.h"
#include "toolops/sqlite_store.h"
#include "toolops/store.h"
#include "toolops/tool.h"
#include "toolops/tool_core.h"

namespace nb = nanobind;

namespace toolops::python {
namespace {

#if ASIO_VERSION >= 102400
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
#else
constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);
#endif

// ---------------------------------------------------------------------------
// Python references that C++ threads may copy and drop.

class PyRef {
 public:
  PyRef() = default;
  explicit PyRef(nb::handle h) : obj_(std::make_shared<Holder>(h)) {}
  nb::handle get() const { return obj_ ? obj_->obj : nb::handle(); }
  explicit operator bool() const { return obj_ != nullptr && obj_->obj != nullptr; }

 private:
  struct Holder {
    explicit Holder(nb::handle h) : obj(h.ptr()) { Py_XINCREF(obj); }
    ~Holder() {
      if (obj == nullptr || !Py_IsInitialized()) return;
      PyGILState_STATE state = PyGILState_Ensure();
      Py_DECREF(obj);
      PyGILState_Release(state);
    }
    PyObject* obj;
  };
  std::shared_ptr<Holder> obj_;
};

// ---------------------------------------------------------------------------
// Result encoding. The first byte of a stored value says what follows.

constexpr char kTagText = 's';     // A str, UTF-8.
constexpr char kTagBinary = 'b';   // A bytes object.
constexpr char kTagOpaque = '\x7f';  // A handle to an object that could not be encoded.

// Objects that could not be encoded, handed to the caller and its waiters by
// handle and never stored. Bounded: the oldest handles are forgotten first.
// Touched only with the GIL held.
class OpaqueResults {
 public:
  // Handles live until kMax newer ones exist: long enough for every waiter
  // of a call to decode its result, which happens as soon as it completes.
  std::string Put(nb::handle value) {
    uint64_t id = next_++;
    objects_.emplace(id, nb::borrow(value));
    order_.push_back(id);
    while (order_.size() > kMax) {
      objects_.erase(order_.front());
      order_.pop_front();
    }
    std::string bytes(1, kTagOpaque);
    bytes.append(reinterpret_cast<const char*>(&id), sizeof(id));
    return bytes;
  }
  nb::object Get(std::string_view bytes) const {
    uint64_t id = 0;
    if (bytes.size() != 1 + sizeof(id)) return nb::object();
    std::memcpy(&id, bytes.data() + 1, sizeof(id));
    auto it = objects_.find(id);
    return it == objects_.end() ? nb::object() : it->second;
  }

 private:
  static constexpr size_t kMax = 1 << 16;
  uint64_t next_ = 1;
  std::unordered_map<uint64_t, nb::object> objects_;
  std::deque<uint64_t> order_;
};

// Exceptions raised by tools, kept so that the leader and every coalesced
// waiter re-raise the tool's own exception object. The status message
// carries the handle: "python exception #N: ...". Bounded like
// OpaqueResults; touched only with the GIL held.
class RaisedExceptions {
 public:
  uint64_t Put(nb::handle exc) {
    uint64_t id = next_++;
    objects_.emplace(id, nb::borrow(exc));
    order_.push_back(id);
    while (order_.size() > kMax) {
      objects_.erase(order_.front());
      order_.pop_front();
    }
    return id;
  }
  nb::object Find(std::string_view message) const {
    static constexpr std::string_view kMark = "python exception #";
    size_t at = message.find(kMark);
    if (at == std::string_view::npos) return nb::object();
    uint64_t id = 0;
    for (size_t i = at + kMark.size(); i < message.size() && message[i] >= '0' && message[i] <= '9';
         ++i) {
      id = id * 10 + static_cast<uint64_t>(message[i] - '0');
    }
    auto it = objects_.find(id);
    return it == objects_.end() ? nb::object() : it->second;
  }

 private:
  static constexpr size_t kMax = 4096;
  uint64_t next_ = 1;
  std::unordered_map<uint64_t, nb::object> objects_;
  std::deque<uint64_t> order_;
};

RaisedExceptions& Raised() {
  static RaisedExceptions* raised = new RaisedExceptions();  // Never destroyed: outlives exit.
  return *raised;
}

// ---------------------------------------------------------------------------
// Argument encoding: Python values to the core's canonical form.

bool EncodeValue(ArgWriter& w, nb::handle value, nb::handle to_data, int depth);

bool EncodeValue(ArgWriter& w, nb::handle value, nb::handle to_data, int depth) {
  if (depth > 64) return false;
  PyObject* o = value.ptr();
  if (o == Py_None) {
    w.Null();
  } else if (o == Py_True || o == Py_False) {
    w.Bool(o == Py_True);
  } else if (PyUnicode_Check(o)) {
    Py_ssize_t size = 0;
    const char* text = PyUnicode_AsUTF8AndSize(o, &size);
    if (text == nullptr) {
      PyErr_Clear();  // Lone surrogates: not encodable, the call goes uncached.
      return false;
    }
    w.String(std::string_view(text, static_cast<size_t>(size)));
  } else if (PyLong_Check(o)) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow == 0) {
      w.Int(v);
    } else if (overflow > 0) {
      unsigned long long u = PyLong_AsUnsignedLongLong(o);
      if (PyErr_Occurred()) {
        PyErr_Clear();
        return false;
      }
      w.UInt(u);
    } else {
      return false;
    }
  } else if (PyFloat_Check(o)) {
    w.Double(PyFloat_AS_DOUBLE(o));
  } else if (PyBytes_Check(o)) {
    w.Binary(std::string_view(PyBytes_AS_STRING(o), static_cast<size_t>(PyBytes_GET_SIZE(o))));
  } else if (PyList_Check(o) || PyTuple_Check(o)) {
    Py_ssize_t n = PySequence_Fast_GET_SIZE(o);
    w.BeginList(static_cast<size_t>(n));
    for (Py_ssize_t i = 0; i < n; ++i) {
      if (!EncodeValue(w, PySequence_Fast_GET_ITEM(o, i), to_data, depth + 1)) return false;
    }
    w.EndList();
  } else if (PyDict_Check(o)) {
    w.BeginMap(static_cast<size_t>(PyDict_Size(o)));
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(o, &pos, &k, &v)) {
      if (!PyUnicode_Check(k)) return false;  // Only text keys, as in JSON.
      Py_ssize_t size = 0;
      const char* key = PyUnicode_AsUTF8AndSize(k, &size);
      if (key == nullptr) {
        PyErr_Clear();
        return false;
      }
      w.Key(std::string_view(key, static_cast<size_t>(size)));
      if (!EncodeValue(w, v, to_data, depth + 1)) return false;
    }
    w.EndMap();
  } else {
    // Anything else (dataclasses, pydantic models, enums, dates, sets) goes
    // through the facade's converter to plain data, or is not encodable.
    if (!to_data.is_valid() || to_data.is_none()) return false;
    PyObject* data = PyObject_CallOneArg(to_data.ptr(), o);
    if (data == nullptr) {
      PyErr_Clear();
      return false;
    }
    nb::object owned = nb::steal(data);
    if (data == o) return false;
    return EncodeValue(w, owned, to_data, depth + 1);
  }
  return w.ok();
}

// ---------------------------------------------------------------------------
// The coroutine runner's thread.

class AsyncRunner {
 public:
  static AsyncRunner& Get() {
    static AsyncRunner* runner = new AsyncRunner();  // Never destroyed: see Stop().
    return *runner;
  }
  asio::io_context& io() {
    std::call_once(started_, [this] {
      thread_ = std::thread([this] { io_.run(); });
    });
    return io_;
  }
  // At interpreter exit: stop the thread. Calls still pending are dropped
  // with their frames (the io_context is never destroyed, so nothing of
  // Python is released after the interpreter is gone).
  void Stop() {
    work_.reset();
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }

 private:
  AsyncRunner() : work_(asio::make_work_guard(io_)) {}
  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::once_flag started_;
  std::thread thread_;
};

// One attempt of an asynchronous tool: set once by the Python task that ran
// it, then read by the runner's coroutine.
struct AttemptBox {
  explicit AttemptBox(asio::any_io_executor executor) : signal(executor, 1) {}
  asio::experimental::concurrent_channel<void(asio::error_code, bool)> signal;
  std::optional<Result<Bytes>> result;
  std::atomic<bool> settled{false};
};

class PyTool;

// Handed to the Python task of an attempt; its set_result / set_exception
// complete the attempt. Extra calls are ignored.
class AttemptDone {
 public:
  AttemptDone(std::shared_ptr<AttemptBox> box, std::shared_ptr<PyTool> tool)
      : box_(std::move(box)), tool_(std::move(tool)) {}
  void SetResult(nb::handle value);
  void SetException(nb::handle exc);
  void Settle(Result<Bytes> result) {
    if (box_->settled.exchange(true)) return;
    box_->result.emplace(std::move(result));
    box_->signal.try_send(asio::error_code(), true);
  }

 private:
  std::shared_ptr<AttemptBox> box_;
  std::shared_ptr<PyTool> tool_;
};

// ---------------------------------------------------------------------------
// A wrapped Python function.

struct ParamSpec {
  std::string name;
  nb::object name_object;    // The name as an interned str.
  nb::object default_value;  // Invalid when the parameter has no default.
};

// The arguments of one call, as the vectorcall protocol passes them (an
// array and a tuple of keyword names) or as a tuple and a dict. Borrowed.
struct ArgView {
  PyObject* const* positional = nullptr;
  Py_ssize_t npositional = 0;
  PyObject* kwnames = nullptr;             // Vectorcall keyword names, or null.
  PyObject* const* kwvalues = nullptr;     // Their values.
  PyObject* kwdict = nullptr;              // Or keywords as a dict, or null.

  static ArgView Of(nb::handle args, nb::handle kwargs) {
    ArgView v;
    v.positional = &PyTuple_GET_ITEM(args.ptr(), 0);
    v.npositional = PyTuple_GET_SIZE(args.ptr());
    if (kwargs.is_valid() && !kwargs.is_none() && PyDict_GET_SIZE(kwargs.ptr()) > 0) {
      v.kwdict = kwargs.ptr();
    }
    return v;
  }
  Py_ssize_t nkeywords() const {
    if (kwdict != nullptr) return PyDict_GET_SIZE(kwdict);
    return kwnames != nullptr ? PyTuple_GET_SIZE(kwnames) : 0;
  }
  // The keyword argument `name`, or null.
  PyObject* Keyword(PyObject* name) const {
    if (kwdict != nullptr) return PyDict_GetItem(kwdict, name);
    if (kwnames == nullptr) return nullptr;
    Py_ssize_t n = PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t j = 0; j < n; ++j) {
      if (PyTuple_GET_ITEM(kwnames, j) == name) return kwvalues[j];
    }
    for (Py_ssize_t j = 0; j < n; ++j) {
      if (PyUnicode_Compare(PyTuple_GET_ITEM(kwnames, j), name) == 0) return kwvalues[j];
    }
    return nullptr;
  }
  // A new tuple and dict of these arguments, for calling the function.
  std::pair<nb::object, nb::object> ToTupleAndDict() const {
    nb::object tuple = nb::steal(PyTuple_New(npositional));
    for (Py_ssize_t i = 0; i < npositional; ++i) {
      Py_INCREF(positional[i]);
      PyTuple_SET_ITEM(tuple.ptr(), i, positional[i]);
    }
    nb::object dict;
    if (kwdict != nullptr) {
      dict = nb::borrow(kwdict);
    } else if (kwnames != nullptr && PyTuple_GET_SIZE(kwnames) > 0) {
      dict = nb::steal(PyDict_New());
      for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(kwnames); ++j) {
        PyDict_SetItem(dict.ptr(), PyTuple_GET_ITEM(kwnames, j), kwvalues[j]);
      }
    }
    return {std::move(tuple), std::move(dict)};
  }
};

class PyTool : public std::enable_shared_from_this<PyTool> {
 public:
  // One call's function and arguments, kept for its attempts.
  struct Call {
    Call(PyRef f, PyRef a, PyRef k) : fn(std::move(f)), args(std::move(a)), kwargs(std::move(k)) {}
    PyRef fn, args, kwargs, loop;
  };

  // Hooks from the facade:
  //   to_data(obj) -> plain data, for arguments of other types (may raise).
  //   encode(value) -> bytes (first byte a tag) or None when not encodable.
  //   decode(bytes) -> value.
  //   classify(exc) -> (code: int, retry_after_seconds: float, text: str).
  //   make_error(code, guard, message, retry_after) -> exception instance.
  //   start_attempt(loop, fn, args, kwargs, done, attempt) -> None: schedules
  //   the coroutine fn(*args, **kwargs) on loop, reporting to done.
  //   settle(loop, future, ok, value_or_exc) -> None: completes future on
  //   its loop (thread-safe).
  struct Hooks {
    nb::object to_data, encode, decode, classify, make_error, start_attempt, settle, missing;
  };

  PyTool(std::shared_ptr<ToolCore> core, std::vector<internal::ParamRole> roles,
         std::vector<ParamSpec> params, size_t skip_first, nb::object fn, Hooks hooks,
         std::shared_ptr<Embedder> embedder)
      : core_(std::move(core)),
        roles_(std::move(roles)),
        params_(std::move(params)),
        skip_first_(skip_first),
        fn_(std::move(fn)),
        hooks_(std::move(hooks)),
        embedder_(std::move(embedder)),
        keyed_(core_->keyed()),
        semantic_(core_->semantic()),
        normalization_(core_->policy().cache.normalization) {
    core_->SetStorable([](const Bytes& b) { return b.empty() || b.data()[0] != kTagOpaque; });
  }

  // Python objects are released with the GIL, whichever thread drops the
  // last reference (a runner thread may).
  ~PyTool() {
    if (!Py_IsInitialized()) return;
    PyGILState_STATE state = PyGILState_Ensure();
    opaque_ = OpaqueResults();
    params_.clear();
    fn_ = nb::object();
    hooks_ = Hooks();
    PyGILState_Release(state);
  }

  ToolCore& core() { return *core_; }

  // Builds the key (and the semantic parts) of a call. Returns false and
  // leaves a Python TypeError set when the arguments do not fit the
  // function; sets *encodable to false when some value has no canonical form
  // (the call then goes upstream uncached).
  bool BuildKey(nb::handle args, nb::handle kwargs, std::string* key, std::string* partition,
                std::string* text, bool* encodable) {
    return BuildKey(ArgView::Of(args, kwargs), key, partition, text, encodable);
  }

  bool BuildKey(const ArgView& view, std::string* key, std::string* partition,
                std::string* text, bool* encodable) {
    *encodable = true;
    Py_ssize_t nargs = view.npositional;
    size_t nparams = params_.size();
    if (static_cast<size_t>(nargs) > nparams + skip_first_) {
      PyErr_Format(PyExc_TypeError, "%s() takes %zu positional arguments but %zd were given",
                   core_->spec().name.c_str(), nparams + skip_first_, nargs);
      return false;
    }
    if (nargs < static_cast<Py_ssize_t>(skip_first_)) {
      PyErr_Format(PyExc_TypeError, "%s() is a method: call it on an instance",
                   core_->spec().name.c_str());
      return false;
    }
    // The value of each parameter, in order (borrowed references).
    PyObject* inline_values[16];
    std::vector<PyObject*> heap_values;
    PyObject** values = inline_values;
    if (nparams > 16) {
      heap_values.resize(nparams);
      values = heap_values.data();
    }
    const Py_ssize_t nkw = view.nkeywords();
    Py_ssize_t used_kw = 0;
    for (size_t i = 0; i < nparams; ++i) {
      Py_ssize_t pos = static_cast<Py_ssize_t>(i + skip_first_);
      PyObject* v = nullptr;
      if (pos < nargs) {
        v = view.positional[pos];
        if (nkw > 0 && view.Keyword(params_[i].name_object.ptr()) != nullptr) {
          PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'",
                       core_->spec().name.c_str(), params_[i].name.c_str());
          return false;
        }
      } else if (nkw > 0 && (v = view.Keyword(params_[i].name_object.ptr())) != nullptr) {
        ++used_kw;
      } else if (params_[i].default_value.is_valid()) {
        v = params_[i].default_value.ptr();
      } else {
        PyErr_Format(PyExc_TypeError, "%s() missing required argument: '%s'",
                     core_->spec().name.c_str(), params_[i].name.c_str());
        return false;
      }
      values[i] = v;
    }
    if (used_kw != nkw) {
      auto [unused_tuple, dict] = view.ToTupleAndDict();
      PyObject *k, *v;
      Py_ssize_t pos = 0;
      while (PyDict_Next(dict.ptr(), &pos, &k, &v)) {
        bool known = false;
        for (const ParamSpec& p : params_) {
          known = known || PyUnicode_Compare(k, p.name_object.ptr()) == 0;
        }
        if (!known) {
          PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'",
                       core_->spec().name.c_str(), k);
          return false;
        }
      }
    }
    if (!keyed_) return true;

    // The key: scope first, then the key parameters (as AppendKeyArgs).
    key->assign(core_->key_prefix());
    {
      ArgWriter w(key, normalization_);
      for (int pass = 0; pass < 2 && *encodable; ++pass) {
        for (size_t i = 0; i < nparams; ++i) {
          internal::ParamRole role = roles_[i];
          bool take = pass == 0 ? role == internal::ParamRole::kScope
                                : (role == internal::ParamRole::kKey ||
                                   role == internal::ParamRole::kSemantic);
          if (take && !EncodeValue(w, values[i], hooks_.to_data, 0)) {
            *encodable = false;
            break;
          }
        }
      }
      if (*encodable && !w.Finish().ok()) *encodable = false;
    }
    if (!*encodable || !semantic_ || partition == nullptr) return true;

    // The semantic parts: the partition (scope and exact key arguments) and
    // the free text of the semantic parameters.
    partition->assign(core_->key_prefix());
    ArgWriter w(partition, normalization_);
    bool ok = true;
    for (int pass = 0; pass < 2 && ok; ++pass) {
      for (size_t i = 0; i < nparams && ok; ++i) {
        internal::ParamRole role = roles_[i];
        bool take = pass == 0 ? role == internal::ParamRole::kScope
                              : role == internal::ParamRole::kKey;
        if (take) ok = EncodeValue(w, values[i], hooks_.to_data, 0);
      }
    }
    for (size_t i = 0; i < nparams && ok; ++i) {
      if (roles_[i] != internal::ParamRole::kSemantic) continue;
      if (!PyUnicode_Check(values[i])) {
        ok = false;
        break;
      }
      Py_ssize_t size = 0;
      const char* t = PyUnicode_AsUTF8AndSize(values[i], &size);
      if (t == nullptr) {
        PyErr_Clear();
        ok = false;
        break;
      }
      if (!text->empty()) text->push_back('\n');
      text->append(t, static_cast<size_t>(size));
    }
    if (!ok || !w.Finish().ok()) {
      partition->clear();
      text->clear();
    }
    return true;
  }

  // A Python value as the bytes the core stores. With the GIL.
  Bytes Encode(nb::handle value) {
    PyObject* o = value.ptr();
    if (PyUnicode_CheckExact(o)) {
      Py_ssize_t size = 0;
      const char* text = PyUnicode_AsUTF8AndSize(o, &size);
      if (text != nullptr) return TaggedCopy(kTagText, std::string_view(text, size));
      PyErr_Clear();
    } else if (PyBytes_CheckExact(o)) {
      return TaggedCopy(kTagBinary, std::string_view(PyBytes_AS_STRING(o), PyBytes_GET_SIZE(o)));
    }
    PyObject* encoded = PyObject_CallOneArg(hooks_.encode.ptr(), o);
    if (encoded == nullptr) {
      PyErr_Clear();
    } else {
      nb::object owned = nb::steal(encoded);
      if (PyBytes_Check(encoded) && PyBytes_GET_SIZE(encoded) > 0) {
        return Bytes::Copy(std::string_view(PyBytes_AS_STRING(encoded), PyBytes_GET_SIZE(encoded)));
      }
    }
    return Bytes::Copy(opaque_.Put(value));
  }

  // Stored bytes as the Python value. With the GIL; raises on failure.
  nb::object Decode(const Bytes& bytes) {
    std::string_view v = bytes.view();
    if (!v.empty() && v[0] == kTagText) {
      PyObject* s = PyUnicode_DecodeUTF8(v.data() + 1, static_cast<Py_ssize_t>(v.size() - 1),
                                         "strict");
      if (s == nullptr) throw nb::python_error();
      return nb::steal(s);
    }
    if (!v.empty() && v[0] == kTagBinary) {
      return nb::steal(PyBytes_FromStringAndSize(v.data() + 1, v.size() - 1));
    }
    if (!v.empty() && v[0] == kTagOpaque) {
      nb::object o = opaque_.Get(v);
      if (o.is_valid()) return o;
      throw nb::python_error(RaiseStatus(Status(
          StatusCode::kDataLoss, "a result that could not be encoded is no longer held",
          Guard::kCodec)));
    }
    return hooks_.decode(nb::bytes(v.data(), v.size()));
  }

  // The exception for a failed call: the tool's own exception when it raised
  // one, otherwise a ToolOps error made by the facade. Returns it (a new
  // reference) without raising.
  nb::object ErrorFor(const Status& status) {
    if (status.guard() == Guard::kUpstream) {
      nb::object exc = Raised().Find(status.message());
      if (exc.is_valid()) return exc;
    }
    double retry_after = std::chrono::duration<double>(status.retry_after()).count();
    return hooks_.make_error(static_cast<int>(status.code()), std::string(GuardName(status.guard())),
                             status.ToString(), retry_after);
  }

  // Sets the Python error for `status` and returns a python_error to throw.
  nb::python_error RaiseStatus(const Status& status) {
    nb::object exc = ErrorFor(status);
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
    return nb::python_error();
  }

  // The status of an exception raised by the tool. With the GIL.
  Status Classify(nb::handle exc) {
    uint64_t id = Raised().Put(exc);
    int code = static_cast<int>(StatusCode::kUnknown);
    double retry_after = 0;
    std::string text;
    try {
      nb::tuple t = nb::cast<nb::tuple>(hooks_.classify(exc));
      code = nb::cast<int>(t[0]);
      retry_after = nb::cast<double>(t[1]);
      text = nb::cast<std::string>(t[2]);
    } catch (const std::exception&) {
      PyErr_Clear();
      text = "an exception the classifier could not read";
    }
    if (code <= 0 || code > static_cast<int>(StatusCode::kUnauthenticated)) {
      code = static_cast<int>(StatusCode::kUnknown);
    }
    auto hint = std::chrono::duration_cast<Duration>(
        std::chrono::duration<double>(std::isfinite(retry_after) && retry_after > 0 ? retry_after
                                                                                    : 0.0));
    return Status(static_cast<StatusCode>(code),
                  "python exception #" + std::to_string(id) + ": " + text, Guard::kUpstream, hint);
  }

  // The arguments of a call as JSON for a span: {"name": value, ...}, the
  // values of sensitive and secret-looking parameters masked, other values
  // as JSON when they are str, bool, int, float or None and as their repr
  // otherwise (each cut at 1 KiB).
  std::string DescribeArguments(nb::handle args, nb::handle kwargs) {
    const std::vector<std::string>& sensitive = core_->policy().sensitive_params;
    std::string out = "{";
    size_t n = 0;
    auto one = [&](std::string_view name, PyObject* value) {
      if (n++ > 0) out += ", ";
      internal::AppendJsonString(&out, name);
      out += ": ";
      if (internal::MaskedParam(sensitive, name)) {
        out += "\"***\"";
      } else if (value == Py_None) {
        out += "null";
      } else if (PyBool_Check(value)) {
        out += value == Py_True ? "true" : "false";
      } else if (PyUnicode_Check(value)) {
        Py_ssize_t size = 0;
        const char* text = PyUnicode_AsUTF8AndSize(value, &size);
        if (text == nullptr) {
          PyErr_Clear();
          out += "\"<not UTF-8>\"";
        } else {
          internal::AppendJsonString(&out, std::string_view(text, std::min<Py_ssize_t>(size, 1024)));
        }
      } else {
        PyObject* repr = PyObject_Repr(value);
        const char* text = repr != nullptr ? PyUnicode_AsUTF8(repr) : nullptr;
        if (text == nullptr) {
          PyErr_Clear();
          out += "\"<no repr>\"";
        } else if ((PyLong_Check(value) || PyFloat_Check(value)) &&
                   std::isfinite(PyFloat_Check(value) ? PyFloat_AS_DOUBLE(value) : 0.0)) {
          out += text;
        } else {
          internal::AppendJsonString(&out, std::string_view(text).substr(0, 1024));
        }
        Py_XDECREF(repr);
      }
    };
    Py_ssize_t nargs = PyTuple_GET_SIZE(args.ptr());
    for (Py_ssize_t i = static_cast<Py_ssize_t>(skip_first_); i < nargs; ++i) {
      size_t index = static_cast<size_t>(i) - skip_first_;
      std::string name = index < params_.size() ? params_[index].name : "arg" + std::to_string(index);
      one(name, PyTuple_GET_ITEM(args.ptr(), i));
    }
    if (kwargs.is_valid() && !kwargs.is_none()) {
      PyObject *k, *v;
      Py_ssize_t pos = 0;
      while (PyDict_Next(kwargs.ptr(), &pos, &k, &v)) {
        const char* name = PyUnicode_AsUTF8(k);
        if (name == nullptr) {
          PyErr_Clear();
          continue;
        }
        one(name, v);
      }
    }
    out += "}";
    return out;
  }

  // The blocking form: the whole call on this thread.
  nb::object CallSync(nb::args args, nb::kwargs kwargs) {
    return CallView(ArgView::Of(args, kwargs));
  }

  nb::object CallView(const ArgView& view) {
    std::string& key = KeyBuffer();
    std::string partition, text;
    bool encodable = true;
    if (!BuildKey(view, &key, semantic_ ? &partition : nullptr, &text, &encodable)) {
      throw nb::python_error();
    }
    if (keyed_ && encodable) {
      KeyRef ref = KeyRef::Of(key);
      if (Bytes hit; core_->TryFreshHit(ref, &hit)) return Decode(hit);
    }
    auto [args, kwargs] = view.ToTupleAndDict();
    // For traces that record arguments; run only if this call is traced
    // (on this thread, which then takes the GIL back for it).
    auto describe = [&, &args = args, &kwargs = kwargs]() -> std::string {
      nb::gil_scoped_acquire gil;
      return DescribeArguments(args, kwargs);
    };
    FunctionRef<std::string()> describe_ref(describe);
    internal::ScopedArgs scoped_args(&describe_ref);
    auto call = std::make_shared<Call>(PyRef(fn_), PyRef(args), PyRef(kwargs));
    std::shared_ptr<PyTool> self = shared_from_this();
    auto make_upstream = [&]() -> Upstream {
      return [self, call](const CallContext&) -> Result<Bytes> { return self->RunSync(*call); };
    };
    Result<Bytes> result = Status();
    std::string owned_key = key;  // The thread's buffer may be reused by a nested call.
    {
      nb::gil_scoped_release release;
      if (!keyed_) {
        result = core_->Call(KeyRef{}, make_upstream);
      } else if (!encodable) {
        result = core_->CallWithoutKey(make_upstream);
      } else if (!partition.empty()) {
        SemanticQuery query{partition, text};
        result = core_->Call(KeyRef::Of(owned_key), &query, make_upstream);
      } else {
        result = core_->Call(KeyRef::Of(owned_key), make_upstream);
      }
    }
    if (!result.ok()) throw RaiseStatus(result.status());
    return Decode(result.value());
  }

  // The fresh-hit path of an asynchronous call: the decoded value, or the
  // facade's `missing` sentinel on a miss (also when the call must go
  // upstream uncached).
  nb::object LookupAsync(nb::args args, nb::kwargs kwargs) {
    return LookupView(ArgView::Of(args, kwargs));
  }

  nb::object LookupView(const ArgView& view) {
    std::string& key = KeyBuffer();
    bool encodable = true;
    if (!BuildKey(view, &key, nullptr, nullptr, &encodable)) throw nb::python_error();
    if (keyed_ && encodable) {
      if (Bytes hit; core_->TryLocalHit(KeyRef::Of(key), &hit)) return Decode(hit);
    }
    return hooks_.missing;
  }

  // The key of a call (bytes), or None when the call is not keyed or its
  // arguments have no canonical form.
  nb::object Key(nb::args args, nb::kwargs kwargs) {
    std::string key;
    bool encodable = true;
    if (!BuildKey(args, kwargs, &key, nullptr, nullptr, &encodable)) throw nb::python_error();
    if (!keyed_ || !encodable) return nb::none();
    return nb::bytes(key.data(), key.size());
  }

  bool EraseKey(nb::bytes key) {
    if (!core_->caching()) return false;
    return ClearKey(std::string(key.c_str(), key.size()));
  }

  // Starts an asynchronous call on the runner thread; its result reaches
  // `future` on `loop`.
  void StartAsync(nb::tuple args, nb::dict kwargs, nb::object loop, nb::object future) {
    std::string key, partition, text;
    bool encodable = true;
    if (!BuildKey(args, kwargs, &key, semantic_ ? &partition : nullptr, &text, &encodable)) {
      throw nb::python_error();
    }
    if (!keyed_ || !encodable) key.clear();
    std::shared_ptr<AsyncSemanticQuery> semantic;
    if (!key.empty() && !partition.empty()) {
      semantic = std::make_shared<AsyncSemanticQuery>();
      semantic->partition = std::move(partition);
      semantic->text = std::move(text);
    }
    auto call = std::make_shared<Call>(PyRef(fn_), PyRef(args), PyRef(kwargs));
    call->loop = PyRef(loop);
    std::shared_ptr<PyTool> self = shared_from_this();
    auto upstream = std::make_shared<const AsyncUpstream>(
        [self, call](const CallContext& ctx) { return self->RunAsyncAttempt(call, ctx.attempt); });
    asio::io_context& io = AsyncRunner::Get().io();
    nb::gil_scoped_release release;
    asio::co_spawn(io,
                   RunAsyncCall(shared_from_this(), std::move(call), PyRef(future), std::move(key),
                                std::move(upstream), std::move(semantic)),
                   asio::detached);
  }

  // One asynchronous call on the runner thread, from the core's coroutine
  // runner to the caller's future.
  static asio::awaitable<void> RunAsyncCall(std::shared_ptr<PyTool> self,
                                            std::shared_ptr<Call> call, PyRef future,
                                            std::string key,
                                            std::shared_ptr<const AsyncUpstream> upstream,
                                            std::shared_ptr<const AsyncSemanticQuery> semantic) {
    Result<Bytes> result = Status();
    try {
      result = co_await CallAsync(self->core_, std::move(key), std::move(upstream),
                                  std::move(semantic));
    } catch (const std::exception& e) {
      result = Status(StatusCode::kInternal,
                      std::string("the coroutine runner failed: ") + e.what(), Guard::kNone);
    }
    if (!Py_IsInitialized()) co_return;
    nb::gil_scoped_acquire gil;
    self->Settle(*call, future, result);
  }

  nb::dict Stats() const {
    StatsSnapshot s = core_->stats();
    nb::dict out;
    for (size_t i = 0; i < kNumCounters; ++i) {
      out[std::string(CounterName(static_cast<Counter>(i))).c_str()] = s.values[i];
    }
    return out;
  }

  bool Invalidate(nb::args args, nb::kwargs kwargs) {
    std::string key;
    bool encodable = true;
    if (!BuildKey(args, kwargs, &key, nullptr, nullptr, &encodable)) throw nb::python_error();
    if (!keyed_ || !encodable || !core_->caching()) return false;
    return ClearKey(key);
  }

  bool ClearKey(const std::string& key);

  // The upstream attempt of a blocking tool: calls the function with the GIL.
  Result<Bytes> RunSync(const Call& call) {
    nb::gil_scoped_acquire gil;
    PyObject* kw = call.kwargs ? call.kwargs.get().ptr() : nullptr;
    PyObject* r = PyObject_Call(call.fn.get().ptr(), call.args.get().ptr(), kw);
    if (r == nullptr) return StatusOfCurrentError();
    nb::object value = nb::steal(r);
    return Encode(value);
  }

  Status StatusOfCurrentError() {
    nb::python_error error;  // Takes the error indicator.
    nb::object exc = nb::borrow(error.value());
    return Classify(exc);
  }

  asio::awaitable<Result<Bytes>> RunAsyncAttempt(std::shared_ptr<Call> call, int attempt) {
    auto box = std::make_shared<AttemptBox>(co_await asio::this_coro::executor);
    {
      nb::gil_scoped_acquire gil;
      try {
        nb::object done = nb::cast(AttemptDone(box, shared_from_this()));
        hooks_.start_attempt(call->loop.get(), call->fn.get(), call->args.get(),
                             call->kwargs.get(), done, attempt);
      } catch (nb::python_error& e) {
        e.restore();
        Status s = StatusOfCurrentError();
        co_return Status(StatusCode::kCancelled,
                         "the attempt could not start on its event loop (" +
                             std::string(s.message()) + ")",
                         Guard::kNone);
      }
    }
    auto [ec, unused] = co_await box->signal.async_receive(kNoThrow);
    if (ec || !box->result) {
      co_return Status(StatusCode::kCancelled, "the attempt was dropped", Guard::kNone);
    }
    co_return std::move(*box->result);
  }

  void Settle(const Call& call, const PyRef& future, const Result<Bytes>& result) {
    try {
      if (result.ok()) {
        nb::object value;
        try {
          value = Decode(result.value());
        } catch (nb::python_error& e) {
          hooks_.settle(call.loop.get(), future.get(), false, e.value());
          return;
        }
        hooks_.settle(call.loop.get(), future.get(), true, value);
      } else {
        hooks_.settle(call.loop.get(), future.get(), false, ErrorFor(result.status()));
      }
    } catch (nb::python_error& e) {
      // The loop is closed: nobody is waiting any more.
      (void)e;
    }
  }

 private:
  static Bytes TaggedCopy(char tag, std::string_view payload) {
    std::string& buffer = EncodeBuffer();
    buffer.assign(1, tag);
    buffer.append(payload);
    return Bytes::Copy(buffer);
  }
  static std::string& KeyBuffer() {
    thread_local std::string buffer;
    return buffer;
  }
  static std::string& EncodeBuffer() {
    thread_local std::string buffer;
    return buffer;
  }

  std::shared_ptr<ToolCore> core_;
  std::vector<internal::ParamRole> roles_;
  std::vector<ParamSpec> params_;
  size_t skip_first_;
  nb::object fn_;
  Hooks hooks_;
  std::shared_ptr<Embedder> embedder_;  // Keeps a Python embedder alive.
  const bool keyed_;
  const bool semantic_;
  const TextNormalization normalization_;
  OpaqueResults opaque_;  // Touched only with the GIL held.
};

bool PyTool::ClearKey(const std::string& key) {
  Result<std::shared_ptr<Store>> store =
      StoreRegistry::Default()->Get(core_->policy().cache.store);
  if (!store.ok()) return false;
  nb::gil_scoped_release release;
  bool erased = (*store)->Erase(KeyRef::Of(key));
  if (!core_->policy().cache.shared_store.empty()) {
    Result<std::shared_ptr<Store>> shared =
        StoreRegistry::Default()->Get(core_->policy().cache.shared_store);
    if (shared.ok()) erased = (*shared)->Erase(KeyRef::Of(key)) || erased;
  }
  return erased;
}

void AttemptDone::SetResult(nb::handle value) { Settle(tool_->Encode(value)); }
void AttemptDone::SetException(nb::handle exc) { Settle(tool_->Classify(exc)); }

// ---------------------------------------------------------------------------
// Embedders written in Python: any callable from str to a sequence of floats.

class PyEmbedder final : public Embedder {
 public:
  PyEmbedder(nb::object fn, size_t dims, std::string model_id)
      : fn_(PyRef(fn)), dims_(dims), model_id_(std::move(model_id)) {}
  Result<std::vector<float>> Embed(std::string_view text) const override {
    nb::gil_scoped_acquire gil;
    std::vector<float> v;
    try {
      nb::object out = nb::borrow(fn_.get())(nb::str(text.data(), text.size()));
      for (nb::handle x : out) v.push_back(nb::cast<float>(x));
    } catch (const std::exception& e) {
      PyErr_Clear();
      return Status(StatusCode::kUnavailable,
                    "embedder '" + model_id_ + "' raised: " + std::string(e.what()),
                    Guard::kNone);
    }
    if (v.size() != dims_) {
      return Status(StatusCode::kDataLoss,
                    "embedder '" + model_id_ + "' returned " + std::to_string(v.size()) +
                        " numbers; it declared " + std::to_string(dims_),
                    Guard::kNone);
    }
    double norm = 0;
    for (float x : v) norm += static_cast<double>(x) * x;
    if (norm > 0) {
      float scale = static_cast<float>(1.0 / std::sqrt(norm));
      for (float& x : v) x *= scale;
    }
    return v;
  }
  size_t dims() const override { return dims_; }
  const std::string& model_id() const override { return model_id_; }

 private:
  PyRef fn_;
  size_t dims_;
  std::string model_id_;
};

// ---------------------------------------------------------------------------
// Policies: a flat dict of dotted field names, filled in by the facade.

Duration Seconds(nb::handle v) {
  double s = nb::cast<double>(v);
  if (!std::isfinite(s)) throw nb::value_error("durations must be finite numbers of seconds");
  return std::chrono::duration_cast<Duration>(std::chrono::duration<double>(s));
}

std::vector<std::string> Strings(nb::handle v) { return nb::cast<std::vector<std::string>>(v); }

std::vector<StatusCode> Codes(nb::handle v) {
  std::vector<StatusCode> out;
  for (int c : nb::cast<std::vector<int>>(v)) out.push_back(static_cast<StatusCode>(c));
  return out;
}

ToolPolicy PolicyFromDict(const nb::dict& d) {
  ToolPolicy p;
  for (auto [k, v] : d) {
    std::string key = nb::cast<std::string>(k);
    if (key == "kind") p.kind = nb::cast<std::string>(v) == "sideeffect" ? ToolKind::kSideEffect
                                                                         : ToolKind::kReadonly;
    else if (key == "idempotent") p.idempotent = nb::cast<bool>(v);
    else if (key == "scope_param") p.scope_param = nb::cast<std::string>(v);
    else if (key == "sensitive_params") p.sensitive_params = Strings(v);
    else if (key == "cost_per_call") p.cost_per_call = nb::cast<double>(v);
    else if (key == "telemetry") p.telemetry = nb::cast<bool>(v);
    else if (key == "cache.enabled") p.cache.enabled = nb::cast<bool>(v);
    else if (key == "cache.ttl") p.cache.ttl = Seconds(v);
    else if (key == "cache.stale_while_revalidate") p.cache.stale_while_revalidate = Seconds(v);
    else if (key == "cache.stale_if_error") p.cache.stale_if_error = Seconds(v);
    else if (key == "cache.key_params") p.cache.key_params = Strings(v);
    else if (key == "cache.normalization") {
      std::string n = nb::cast<std::string>(v);
      if (n == "none") p.cache.normalization = TextNormalization::kNone;
      else if (n == "nfc") p.cache.normalization = TextNormalization::kNfc;
      else if (n == "nfkc") p.cache.normalization = TextNormalization::kNfkc;
      else if (n == "nfkc_casefold") p.cache.normalization = TextNormalization::kNfkcCasefold;
      else throw nb::value_error(("normalization is '" + n +
                                  "'; it must be none, nfc, nfkc or nfkc_casefold").c_str());
    }
    else if (key == "cache.store") p.cache.store = nb::cast<std::string>(v);
    else if (key == "cache.shared_store") p.cache.shared_store = nb::cast<std::string>(v);
    else if (key == "cache.max_value_bytes") p.cache.max_value_bytes = nb::cast<size_t>(v);
    else if (key == "cache.semantic.params") p.cache.semantic.params = Strings(v);
    else if (key == "cache.semantic.threshold") p.cache.semantic.threshold = nb::cast<double>(v);
    else if (key == "cache.semantic.guard") p.cache.semantic.guard = nb::cast<bool>(v);
    else if (key == "cache.semantic.candidates") p.cache.semantic.candidates = nb::cast<size_t>(v);
    else if (key == "cache.semantic.max_per_partition")
      p.cache.semantic.max_per_partition = nb::cast<size_t>(v);
    else if (key == "retry.max_attempts") p.retry.max_attempts = nb::cast<int>(v);
    else if (key == "retry.initial_backoff") p.retry.initial_backoff = Seconds(v);
    else if (key == "retry.multiplier") p.retry.multiplier = nb::cast<double>(v);
    else if (key == "retry.max_backoff") p.retry.max_backoff = Seconds(v);
    else if (key == "retry.retry_on") p.retry.retry_on = Codes(v);
    else if (key == "retry.honor_retry_after") p.retry.honor_retry_after = nb::cast<bool>(v);
    else if (key == "retry.max_retry_after") p.retry.max_retry_after = Seconds(v);
    else if (key == "retry.budget_ratio") p.retry.budget_ratio = nb::cast<double>(v);
    else if (key == "retry.budget_min_retries_per_second")
      p.retry.budget_min_retries_per_second = nb::cast<double>(v);
    else if (key == "retry.budget_window") p.retry.budget_window = Seconds(v);
    else if (key == "timeout.attempt_timeout") p.timeout.attempt_timeout = Seconds(v);
    else if (key == "timeout.deadline") p.timeout.deadline = Seconds(v);
    else if (key == "breaker.enabled") p.breaker.enabled = nb::cast<bool>(v);
    else if (key == "breaker.window") {
      std::string w = nb::cast<std::string>(v);
      if (w == "count") p.breaker.window = BreakerWindow::kCountBased;
      else if (w == "time") p.breaker.window = BreakerWindow::kTimeBased;
      else throw nb::value_error(("breaker window is '" + w + "'; it must be count or time").c_str());
    }
    else if (key == "breaker.window_size") p.breaker.window_size = nb::cast<int>(v);
    else if (key == "breaker.window_duration") p.breaker.window_duration = Seconds(v);
    else if (key == "breaker.minimum_calls") p.breaker.minimum_calls = nb::cast<int>(v);
    else if (key == "breaker.failure_rate_threshold")
      p.breaker.failure_rate_threshold = nb::cast<double>(v);
    else if (key == "breaker.slow_call_rate_threshold")
      p.breaker.slow_call_rate_threshold = nb::cast<double>(v);
    else if (key == "breaker.slow_call_duration") p.breaker.slow_call_duration = Seconds(v);
    else if (key == "breaker.open_wait") p.breaker.open_wait = Seconds(v);
    else if (key == "breaker.half_open_probes") p.breaker.half_open_probes = nb::cast<int>(v);
    else if (key == "breaker.failure_codes") p.breaker.failure_codes = Codes(v);
    else if (key == "breaker.shared_store") p.breaker.shared_store = nb::cast<std::string>(v);
    else if (key == "limit.max_concurrent") p.limit.max_concurrent = nb::cast<int>(v);
    else if (key == "limit.max_wait") p.limit.max_wait = Seconds(v);
    else if (key == "coalesce.enabled") p.coalesce.enabled = nb::cast<bool>(v);
    else if (key == "coalesce.max_flights") p.coalesce.max_flights = nb::cast<size_t>(v);
    else if (key == "coalesce.across_processes") p.coalesce.across_processes = nb::cast<bool>(v);
    else throw nb::value_error(("unknown policy field '" + key + "'").c_str());
  }
  return p;
}

std::shared_ptr<PyTool> MakeTool(std::string name, std::string version,
                                 std::vector<std::string> names, nb::list defaults,
                                 size_t skip_first, nb::dict policy_dict, nb::object fn,
                                 nb::dict hooks, nb::object embedder, size_t embedder_dims) {
  ToolPolicy policy = PolicyFromDict(policy_dict);
  if (policy.kind == ToolKind::kSideEffect) policy = internal::AsSideEffect(std::move(policy));
  std::vector<ParamSpec> params;
  nb::handle missing = hooks["missing"];
  for (size_t i = 0; i < names.size(); ++i) {
    ParamSpec p;
    p.name = names[i];
    p.name_object = nb::steal(PyUnicode_InternFromString(names[i].c_str()));
    nb::handle d = defaults[i];
    if (!d.is(missing)) p.default_value = nb::borrow(d);
    params.push_back(std::move(p));
  }
  Environment env;
  std::shared_ptr<Embedder> py_embedder;
  if (!embedder.is_none()) {
    py_embedder = std::make_shared<PyEmbedder>(
        embedder, embedder_dims, "python:" + nb::cast<std::string>(nb::repr(embedder)));
    env.embedder = py_embedder.get();
  }
  Result<internal::WrappedCore> made =
      internal::WrapCore(ToolSpec(name, version, names), std::move(policy), names.size(), env);
  if (!made.ok()) throw nb::value_error(std::string(made.status().message()).c_str());
  PyTool::Hooks h{nb::borrow(hooks["to_data"]),    nb::borrow(hooks["encode"]),
                  nb::borrow(hooks["decode"]),     nb::borrow(hooks["classify"]),
                  nb::borrow(hooks["make_error"]), nb::borrow(hooks["start_attempt"]),
                  nb::borrow(hooks["settle"]),     nb::borrow(hooks["missing"])};
  auto tool = std::make_shared<PyTool>(std::move(made->core), std::move(made->roles),
                                       std::move(params), skip_first, std::move(fn), std::move(h),
                                       std::move(py_embedder));
  return tool;
}

// ---------------------------------------------------------------------------
// Stores.

void RegisterStore(const std::string& name, Result<std::unique_ptr<Store>> store) {
  if (!store.ok()) throw nb::value_error(store.status().ToString().c_str());
  StoreRegistry::Default()->Register(name, std::shared_ptr<Store>(std::move(store).value()));
}

std::shared_ptr<Store> GetStore(const std::string& name) {
  Result<std::shared_ptr<Store>> store = StoreRegistry::Default()->Get(name);
  if (!store.ok()) throw nb::key_error(std::string(store.status().message()).c_str());
  return std::move(store).value();
}


// ---------------------------------------------------------------------------
// The callable a decorator returns for a blocking tool (and the hit lookup of
// an asynchronous one): a C type with vectorcall, so that a call reaches the
// core with no Python frame and no argument tuple; a method descriptor, so
// that it binds to instances like a function; and a __dict__, so that
// functools.wraps can give it the tool function's name, doc and signature.

struct FastCallable {
  PyObject_HEAD
  vectorcallfunc vectorcall;
  PyObject* dict;
  PyObject* weakrefs;
  PyObject* owner;  // The Tool object: keeps `tool` alive.
  PyTool* tool;
  int mode;  // kCallMode or kLookupMode.
};

constexpr int kCallMode = 0;
constexpr int kLookupMode = 1;

PyObject* FastVectorcall(PyObject* callable, PyObject* const* args, size_t nargsf,
                         PyObject* kwnames) {
  auto* self = reinterpret_cast<FastCallable*>(callable);
  ArgView view;
  view.positional = args;
  view.npositional = PyVectorcall_NARGS(nargsf);
  view.kwnames = kwnames;
  view.kwvalues = args + view.npositional;
  try {
    nb::object result =
        self->mode == kCallMode ? self->tool->CallView(view) : self->tool->LookupView(view);
    return result.release().ptr();
  } catch (nb::python_error& e) {
    e.restore();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return nullptr;
}

int FastTraverse(PyObject* o, visitproc visit, void* arg) {
  auto* self = reinterpret_cast<FastCallable*>(o);
  Py_VISIT(self->dict);
  Py_VISIT(self->owner);
  Py_VISIT(Py_TYPE(o));
  return 0;
}

int FastClear(PyObject* o) {
  auto* self = reinterpret_cast<FastCallable*>(o);
  Py_CLEAR(self->dict);
  Py_CLEAR(self->owner);
  self->tool = nullptr;
  return 0;
}

void FastDealloc(PyObject* o) {
  PyTypeObject* type = Py_TYPE(o);
  PyObject_GC_UnTrack(o);
  auto* self = reinterpret_cast<FastCallable*>(o);
  if (self->weakrefs != nullptr) PyObject_ClearWeakRefs(o);
  FastClear(o);
  type->tp_free(o);
  Py_DECREF(type);
}

PyObject* FastCall(PyObject* o, PyObject* args, PyObject* kwargs) {
  if (reinterpret_cast<FastCallable*>(o)->tool == nullptr) {
    PyErr_SetString(PyExc_RuntimeError, "this toolops tool has been cleared");
    return nullptr;
  }
  return PyVectorcall_Call(o, args, kwargs);
}

PyObject* FastDescrGet(PyObject* self, PyObject* obj, PyObject* type) {
  if (obj == nullptr || obj == Py_None) {
    Py_INCREF(self);
    return self;
  }
  return PyMethod_New(self, obj);
}

PyObject* FastRepr(PyObject* o) {
  auto* self = reinterpret_cast<FastCallable*>(o);
  PyObject* name = self->dict ? PyDict_GetItemString(self->dict, "__qualname__") : nullptr;
  if (name != nullptr) return PyUnicode_FromFormat("<toolops tool %S>", name);
  return PyUnicode_FromString("<toolops tool>");
}

PyMemberDef kFastMembers[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(FastCallable, vectorcall), READONLY, nullptr},
    {"__dictoffset__", T_PYSSIZET, offsetof(FastCallable, dict), READONLY, nullptr},
    {"__weaklistoffset__", T_PYSSIZET, offsetof(FastCallable, weakrefs), READONLY, nullptr},
    {nullptr, 0, 0, 0, nullptr},
};

PyGetSetDef kFastGetSet[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, nullptr, nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyType_Slot kFastSlots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(FastDealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(FastTraverse)},
    {Py_tp_clear, reinterpret_cast<void*>(FastClear)},
    {Py_tp_call, reinterpret_cast<void*>(FastCall)},
    {Py_tp_descr_get, reinterpret_cast<void*>(FastDescrGet)},
    {Py_tp_repr, reinterpret_cast<void*>(FastRepr)},
    {Py_tp_members, kFastMembers},
    {Py_tp_getset, kFastGetSet},
    {0, nullptr},
};

PyType_Spec kFastSpec = {
    "toolops._core.FastCallable",
    sizeof(FastCallable),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
        Py_TPFLAGS_METHOD_DESCRIPTOR,
    kFastSlots,
};

PyTypeObject* FastType() {
  static PyTypeObject* type = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&kFastSpec));
  return type;
}

nb::object MakeFast(nb::handle owner, int mode) {
  PyTool* tool = nb::inst_ptr<PyTool>(owner);
  PyTypeObject* type = FastType();
  if (type == nullptr) throw nb::python_error();
  auto* self = PyObject_GC_New(FastCallable, type);
  if (self == nullptr) throw nb::python_error();
  self->vectorcall = FastVectorcall;
  self->dict = nullptr;
  self->weakrefs = nullptr;
  self->owner = owner.ptr();
  Py_INCREF(owner.ptr());
  self->tool = tool;
  self->mode = mode;
  PyObject_GC_Track(reinterpret_cast<PyObject*>(self));
  return nb::steal(reinterpret_cast<PyObject*>(self));
}

}  // namespace
}  // namespace toolops::python

NB_MODULE(_core, m) {
  using namespace toolops;
  using namespace toolops::python;
  m.doc() = "ToolOps C++ core (internal: use the toolops package)";
  // Wrapped tools are module globals that live until the interpreter ends;
  // nanobind's exit-time report would list each of them as a leak.
  nb::set_leak_warnings(false);

  nb::class_<AttemptDone>(m, "AttemptDone")
      .def("set_result", &AttemptDone::SetResult)
      .def("set_exception", &AttemptDone::SetException);

  nb::class_<PyTool>(m, "Tool")
      .def("call", &PyTool::CallSync)
      .def("lookup", &PyTool::LookupAsync)
      .def("start", &PyTool::StartAsync)
      .def("stats", &PyTool::Stats)
      .def("invalidate", &PyTool::Invalidate)
      .def("key", &PyTool::Key)
      .def("erase_key", &PyTool::EraseKey)
      .def("clear", [](PyTool& t) {
        nb::gil_scoped_release release;
        return t.core().ClearCache();
      })
      .def("breaker_state", [](PyTool& t) { return std::string(t.core().breaker_state()); })
      .def("breaker_transitions", [](PyTool& t) { return t.core().breaker_transitions(); })
      .def("flights", [](PyTool& t) { return t.core().flights(); })
      .def("set_fallback_value", [](PyTool& t, nb::handle value) {
        Bytes encoded = t.Encode(value);
        t.core().SetFallback([encoded](const Status&) -> Result<Bytes> { return encoded; });
      })
      .def_prop_ro("key_prefix",
                   [](PyTool& t) { return nb::bytes(t.core().key_prefix().data(),
                                                    t.core().key_prefix().size()); });

  m.def("make_fast", &toolops::python::MakeFast, nb::arg("tool"), nb::arg("lookup") = false);
  m.def("make_tool", &toolops::python::MakeTool, nb::arg("name"), nb::arg("version"), nb::arg("params"),
        nb::arg("defaults"), nb::arg("skip_first"), nb::arg("policy"), nb::arg("fn"),
        nb::arg("hooks"), nb::arg("embedder").none(), nb::arg("embedder_dims"));

  m.def("register_memory_store", [](const std::string& name, size_t max_entries, size_t max_bytes) {
    MemoryStoreOptions o;
    o.name = name;
    o.max_entries = max_entries;
    o.max_bytes = max_bytes;
    RegisterStore(name, NewMemoryStore(o));
  });
  m.def("register_sqlite_store", [](const std::string& name, const std::string& path,
                                    const std::string& ns, size_t max_value_bytes) {
    SqliteStoreOptions o;
    o.name = name;
    o.path = path;
    o.key_namespace = ns;
    o.max_value_bytes = max_value_bytes;
    nb::gil_scoped_release release;
    RegisterStore(name, NewSqliteStore(o));
  });
  m.def("register_redis_store",
        [](const std::string& name, const std::string& url, const std::string& host, int port,
           int db, const std::string& username, const std::string& password, bool tls,
           const std::string& ca_file, bool cluster, const std::string& ns, size_t pool_size) {
          RedisStoreOptions o;
          o.name = name;
          o.url = url;
          o.host = host;
          o.port = port;
          o.db = db;
          o.username = username;
          o.password = password;
          o.tls.enabled = tls;
          o.tls.ca_file = ca_file;
          o.cluster = cluster;
          o.key_namespace = ns;
          o.pool_size = pool_size;
          Result<std::unique_ptr<Store>> store = Status();
          {
            nb::gil_scoped_release release;
            store = NewRedisStore(o);
          }
          RegisterStore(name, std::move(store));
        });
  m.def("register_postgres_store", [](const std::string& name, const std::string& conninfo,
                                      const std::string& table, const std::string& ns) {
    PostgresStoreOptions o;
    o.name = name;
    o.conninfo = conninfo;
    o.table = table;
    o.key_namespace = ns;
    Result<std::unique_ptr<Store>> store = Status();
    {
      nb::gil_scoped_release release;
      store = NewPostgresStore(o);
    }
    RegisterStore(name, std::move(store));
  });
  // The configuration file: read, checked and applied by the core (stores
  // registered, tool policies installed for the tools wrapped afterwards).
  // Returns (path, [(name, type, shared) for each configured store],
  // the telemetry's error or "").
  m.def("configure", [](const std::string& path) {
    Result<Config> config = Status();
    Status applied;
    Status telemetry;
    {
      nb::gil_scoped_release release;
      config = LoadConfig(path);
      if (config.ok()) applied = ApplyConfig(*config);
      if (config.ok() && applied.ok()) telemetry = ApplyTelemetry(*config);
    }
    if (!config.ok()) throw nb::value_error(std::string(config.status().message()).c_str());
    if (!applied.ok()) throw nb::value_error(std::string(applied.message()).c_str());
    nb::list stores;
    for (const auto& [name, store] : config->stores) {
      stores.append(nb::make_tuple(name, store.type_name, store.shared()));
    }
    // The stores are registered even when the telemetry failed: the facade
    // registers them too, then raises the telemetry's error.
    return nb::make_tuple(config->path, stores, std::string(telemetry.message()));
  });
  // Records in a shared store that the tool with `prefix` carries `tags`
  // (for `toolops invalidate --tag` in another process).
  m.def("record_tool_tags", [](const std::string& store_name, nb::bytes prefix,
                               std::vector<std::string> tags) {
    std::shared_ptr<Store> store = GetStore(store_name);
    std::string p(prefix.c_str(), prefix.size());
    nb::gil_scoped_release release;
    return RecordToolTags(*store, p, tags).ok();
  });
  // Records in the tool's shared store (cache.shared_store) that the entry
  // of `key` carries `tags`, for as long as the entry may live, so that
  // `toolops invalidate --tag` in another process erases it. The exchange
  // runs on the default executor: the caller (maybe an event loop) never
  // waits for the store. False when the tool has no shared store or the
  // store cannot record single entries (memory).
  m.def("record_call_tags", [](PyTool& tool, nb::bytes key, std::vector<std::string> tags) {
    const CachePolicy& cache = tool.core().policy().cache;
    if (cache.shared_store.empty()) return false;
    Result<std::shared_ptr<Store>> store = StoreRegistry::Default()->Get(cache.shared_store);
    if (!store.ok() || CallTagIndexOf(**store) == nullptr) return false;
    Duration life = cache.ttl + std::max(cache.stale_while_revalidate, cache.stale_if_error);
    DefaultExecutor()->Submit([store = std::move(store).value(),
                               k = std::string(key.c_str(), key.size()), tags = std::move(tags),
                               life] {
      Status s = CallTagIndexOf(*store)->TagEntry(KeyRef::Of(k), tags, life);
      if (!s.ok()) {
        Log(LogLevel::kDebug, "tags.record",
            "recording a call's tags failed: " + std::string(s.message()));
      }
    });
    return true;
  });
  m.def("store_names", [] { return StoreRegistry::Default()->Names(); });
  m.def("store_stats", [](const std::string& name) {
    std::shared_ptr<Store> store = GetStore(name);
    StoreStats s;
    {
      nb::gil_scoped_release release;
      s = store->Stats();
    }
    nb::dict d;
    d["entries"] = s.entries;
    d["bytes"] = s.bytes;
    d["hits"] = s.hits;
    d["misses"] = s.misses;
    d["evictions"] = s.evictions;
    d["expirations"] = s.expirations;
    d["rejected"] = s.rejected;
    return d;
  });
  m.def("store_clear", [](const std::string& name, nb::bytes prefix) {
    std::shared_ptr<Store> store = GetStore(name);
    std::string p(prefix.c_str(), prefix.size());
    nb::gil_scoped_release release;
    return store->EraseByPrefix(p);
  });
  // Raw entries, for cache_manager.get / set / delete: the key is a plain
  // string under a prefix of its own, so it never meets a tool's entries.
  m.def("store_get", [](const std::string& name, const std::string& key) -> nb::object {
    std::shared_ptr<Store> store = GetStore(name);
    std::optional<StoredValue> v;
    {
      nb::gil_scoped_release release;
      TimePoint now = RealClock()->Now();
      v = store->Get(KeyRef::Of(key), now);
      if (v && v->fresh_until <= now) v.reset();
    }
    if (!v) return nb::none();
    return nb::bytes(v->value.data(), v->value.size());
  });
  m.def("store_put", [](const std::string& name, const std::string& key, nb::bytes value,
                        double ttl_seconds) {
    std::shared_ptr<Store> store = GetStore(name);
    Bytes b = Bytes::Copy(std::string_view(value.c_str(), value.size()));
    nb::gil_scoped_release release;
    TimePoint now = RealClock()->Now();
    auto ttl = std::chrono::duration_cast<Duration>(std::chrono::duration<double>(ttl_seconds));
    Status s = store->Put(KeyRef::Of(key), StoredValue{b, now + ttl, now + ttl}, now);
    if (!s.ok()) {
      nb::gil_scoped_acquire gil;
      throw nb::value_error(s.ToString().c_str());
    }
  });
  m.def("store_delete", [](const std::string& name, const std::string& key) {
    std::shared_ptr<Store> store = GetStore(name);
    nb::gil_scoped_release release;
    return store->Erase(KeyRef::Of(key));
  });
  m.def("default_model_directory", [] { return DefaultModelDirectory(); });
  m.def("embed", [](const std::string& text, const std::string& model_dir) {
    Result<std::unique_ptr<Embedder>> e = LoadStaticEmbedder(model_dir);
    if (!e.ok()) throw nb::value_error(e.status().ToString().c_str());
    Result<std::vector<float>> v = (*e)->Embed(text);
    if (!v.ok()) throw nb::value_error(v.status().ToString().c_str());
    return std::move(v).value();
  });
  m.def("shutdown", [] {
    nb::gil_scoped_release release;
    AsyncRunner::Get().Stop();
    StopAppliedTelemetry();
    ShutdownTracing();
  });

  // Telemetry (metrics.h, tracing.h, log.h); the facade is toolops.telemetry.
  m.def("metrics", [] {
    std::vector<ToolMetrics> all;
    {
      nb::gil_scoped_release release;
      all = CollectToolMetrics();
    }
    nb::list out;
    for (const ToolMetrics& t : all) {
      nb::dict d;
      d["tool"] = t.tool;
      nb::dict counters;
      for (size_t i = 0; i < kNumCounters; ++i) {
        counters[std::string(CounterName(static_cast<Counter>(i))).c_str()] = t.counters.values[i];
      }
      d["counters"] = counters;
      d["upstream_calls"] = t.upstream_calls;
      d["calls_saved"] = t.counters.saved();
      d["cost_per_call"] = t.cost_per_call;
      d["money_saved"] = t.money_saved;
      d["breaker_state"] = t.breaker_state_name;
      d["breaker_transitions"] = t.breaker_transitions;
      d["instances"] = t.instances;
      nb::list bounds, counts;
      for (double b : kLatencyBucketBounds) bounds.append(b);
      for (uint64_t c : t.latency.counts) counts.append(c);
      nb::dict latency;
      latency["bounds"] = bounds;
      latency["counts"] = counts;
      latency["count"] = t.latency.count;
      latency["sum"] = t.latency.sum_seconds;
      latency["pending_hits"] = t.latency.pending_hits;
      d["latency"] = latency;
      out.append(d);
    }
    return out;
  });
  m.def("prometheus_text", [] {
    nb::gil_scoped_release release;
    return PrometheusText();
  });
  nb::class_<MetricsServer>(m, "MetricsServer")
      .def_prop_ro("port", &MetricsServer::port)
      .def_prop_ro("host", &MetricsServer::host)
      .def_prop_ro("requests", &MetricsServer::requests);
  m.def("start_metrics_server", [](const std::string& host, uint16_t port) {
    Result<std::unique_ptr<MetricsServer>> server = MetricsServer::Start(host, port);
    if (!server.ok()) throw nb::value_error(std::string(server.status().message()).c_str());
    return std::move(server).value();
  });
  m.def("configure_tracing", [](const nb::dict& d) {
    TracingOptions o;
    for (auto [k, v] : d) {
      std::string key = nb::cast<std::string>(k);
      if (key == "enabled") o.enabled = nb::cast<bool>(v);
      else if (key == "endpoint") o.endpoint = nb::cast<std::string>(v);
      else if (key == "headers") o.headers = nb::cast<std::vector<std::pair<std::string, std::string>>>(v);
      else if (key == "timeout") o.timeout = Seconds(v);
      else if (key == "service_name") o.service_name = nb::cast<std::string>(v);
      else if (key == "resource_attributes")
        o.resource_attributes = nb::cast<std::vector<std::pair<std::string, std::string>>>(v);
      else if (key == "sampler") {
        std::string s = nb::cast<std::string>(v);
        if (s == "always_on") o.sampler = TraceSampler::kAlwaysOn;
        else if (s == "always_off") o.sampler = TraceSampler::kAlwaysOff;
        else if (s == "traceidratio") o.sampler = TraceSampler::kTraceIdRatio;
        else if (s == "parentbased_always_on") o.sampler = TraceSampler::kParentBasedAlwaysOn;
        else if (s == "parentbased_always_off") o.sampler = TraceSampler::kParentBasedAlwaysOff;
        else if (s == "parentbased_traceidratio") o.sampler = TraceSampler::kParentBasedTraceIdRatio;
        else throw nb::value_error(("sampler is '" + s + "'; expected always_on, always_off, "
                                    "traceidratio or parentbased_<one of them>").c_str());
      }
      else if (key == "ratio") o.ratio = nb::cast<double>(v);
      else if (key == "max_queue_spans") o.max_queue_spans = nb::cast<size_t>(v);
      else if (key == "max_batch_spans") o.max_batch_spans = nb::cast<size_t>(v);
      else if (key == "schedule_delay") o.schedule_delay = Seconds(v);
      else if (key == "record_arguments") o.record_arguments = nb::cast<bool>(v);
      else throw nb::value_error(("unknown tracing option '" + key + "'").c_str());
    }
    Status s;
    {
      nb::gil_scoped_release release;
      s = ConfigureTracing(o);
    }
    if (!s.ok()) throw nb::value_error(std::string(s.message()).c_str());
  });
  // The metrics endpoint that the configuration's [telemetry] started (0: none).
  m.def("applied_metrics_port", [] { return AppliedMetricsPort(); });
  m.def("stop_applied_telemetry", [] {
    nb::gil_scoped_release release;
    StopAppliedTelemetry();
  });
  m.def("configure_tracing_from_env", [] {
    Status s;
    {
      nb::gil_scoped_release release;
      s = ConfigureTracingFromEnv();
    }
    if (!s.ok()) throw nb::value_error(std::string(s.message()).c_str());
  });
  m.def("flush_tracing", [](double timeout) {
    nb::gil_scoped_release release;
    return FlushTracing(std::chrono::duration_cast<Duration>(std::chrono::duration<double>(timeout)));
  });
  m.def("tracing_stats", [] {
    TracingStats t = GetTracingStats();
    nb::dict d;
    d["spans_started"] = t.spans_started;
    d["spans_exported"] = t.spans_exported;
    d["spans_dropped"] = t.spans_dropped;
    d["export_failures"] = t.export_failures;
    return d;
  });
  m.def("configure_logging", [](const std::string& format, const std::string& level) {
    Result<LogLevel> parsed = ParseLogLevel(level);
    if (!parsed.ok()) throw nb::value_error(std::string(parsed.status().message()).c_str());
    if (format == "json") {
      SetLogSink(JsonLogSink(stderr));
    } else if (format == "text") {
      SetLogSink(nullptr);
    } else {
      throw nb::value_error(("log format is '" + format + "'; use json or text").c_str());
    }
    SetLogLevel(parsed.value());
  });
  m.def("log", [](const std::string& level, const std::string& event, const std::string& message,
                  const std::string& tool) {
    Result<LogLevel> parsed = ParseLogLevel(level);
    if (!parsed.ok()) throw nb::value_error(std::string(parsed.status().message()).c_str());
    Log(parsed.value(), event, message, LogFields{tool, {}});
  });
  // The tool-call id of the next call on this thread (blocking tools); the
  // previous one is returned so that the facade can restore it.
  m.def("set_call_id", [](std::optional<std::string> id) -> std::optional<std::string> {
    thread_local std::string storage;
    std::optional<std::string> previous;
    if (internal::current_call_id == &storage) previous = storage;
    if (id) {
      storage = std::move(*id);
      internal::current_call_id = &storage;
    } else {
      internal::current_call_id = nullptr;
    }
    return previous;
  });
  m.def("looks_like_secret_name", [](const std::string& name) { return LooksLikeSecretName(name); });
  m.def("mask_secrets", [](const std::string& text) { return MaskSecretsInText(text); });
  m.attr("STATUS_CODES") = [] {
    nb::dict d;
    for (int c = 0; c <= static_cast<int>(StatusCode::kUnauthenticated); ++c) {
      d[std::string(StatusCodeName(static_cast<StatusCode>(c))).c_str()] = c;
    }
    return d;
  }();
}

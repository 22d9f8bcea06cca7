//! The `gc`, `weakref` and `sys` modules, on reap's own facilities, and the behaviour of the
//! native objects (weak containers, proxies, `finalize`, iterators, views).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

use reap::{AnyGc, CollectPhase, Gc, Trace, Weak, WeakKeyMap, WeakValueMap};

use crate::builtins::{self as b, addr};
use crate::compile::Name;
use crate::interp::{Interp, PyResult};
use crate::value::*;

/// The result of an explicit `finalize` call (the error is the exception instance).
pub type FinResult = Rc<RefCell<Option<Result<Value, Box<dyn Any>>>>>;

/// Callable, args and kwargs of a `finalize`.
pub type FinInfo = (Value, Vec<Value>, Vec<(Rc<str>, Value)>);

/// A `weakref.finalize` object: reap's `Finalizer` plus what Python can ask of it.
#[derive(Trace)]
pub struct FinalizeObj {
    /// The registration.
    pub f: reap::Finalizer<dyn Any>,
    /// Its key in the interpreter's registry.
    pub id: u64,
    /// Callable, args, kwargs (for `peek`/`detach`), shared with the registered closure, which
    /// releases them when it runs (as CPython's registry entry goes).
    #[reap(skip)]
    pub info: Rc<RefCell<Option<FinInfo>>>,
    /// Whether an explicit call is running (its result goes to `result`, errors raise).
    #[reap(skip)]
    pub explicit: Rc<Cell<bool>>,
    /// Result of an explicit call.
    #[reap(skip)]
    pub result: FinResult,
    /// `atexit`. API: reap's `Finalizer` has no atexit flag yet; minipy runs the pending
    /// `atexit=True` ones itself at exit and detaches the others before `Heap::shutdown`.
    pub atexit: Cell<bool>,
}

thread_local! {
    static NEXT_FIN: Cell<u64> = const { Cell::new(1) };
}

fn name(s: &str) -> Name {
    Name::of(s)
}

/// Builds a built-in module.
pub fn make_module(it: &Interp, m: &str) -> PyResult {
    let dict = it.heap.alloc(Dict::default());
    let set = |k: &str, v: Value| it.dict_set_str(&dict, &name(k), v);
    for (i, d) in b::BUILTINS.iter().enumerate() {
        if d.module == Some(m) {
            set(d.name, Value::Builtin(BuiltinId(i as u16)));
        }
    }
    match m {
        "gc" => {
            set(
                "DEBUG_STATS",
                Value::Int(reap::DebugFlags::STATS.bits() as i64),
            );
            set("DEBUG_COLLECTABLE", Value::Int(2));
            set("DEBUG_UNCOLLECTABLE", Value::Int(4));
            set(
                "DEBUG_SAVEALL",
                Value::Int(reap::DebugFlags::SAVEALL.bits() as i64),
            );
            set("DEBUG_LEAK", Value::Int(38));
            set("callbacks", Value::List(it.gc_callbacks.clone()));
            set("garbage", it.new_list(vec![]));
        }
        "weakref" => {
            set("ref", Value::Class(it.types.weakref.clone()));
            set("finalize", Value::Class(it.types.finalize.clone()));
            set("WeakMethod", Value::Class(it.types.weakmethod.clone()));
            set("ReferenceType", Value::Class(it.types.weakref.clone()));
            set("ProxyType", Value::Builtin(b::WR_PROXY));
            set("CallableProxyType", Value::Builtin(b::WR_PROXY));
        }
        "sys" => {
            set("stdout", it.new_native(NativeKind::Stream(1)));
            set("stderr", it.new_native(NativeKind::Stream(2)));
            set("maxsize", Value::Int(i64::MAX));
            let argv = vec![Value::str(&it.path.borrow())];
            set("argv", it.new_list(argv));
            set(
                "version_info",
                it.new_tuple(vec![Value::Int(3), Value::Int(11), Value::Int(0)]),
            );
            set("implementation", Value::str("minipy"));
        }
        "time" | "os" | "random" | "itertools" | "functools" | "collections" | "math" => {
            return Err(it.exc(
                "NotImplementedError",
                format!("module '{m}' is outside minipy's subset"),
            ))
        }
        _ => return Err(it.exc("ModuleNotFoundError", format!("No module named '{m}'"))),
    }
    Ok(Value::Module(it.heap.alloc(Module {
        name: Rc::from(m),
        dict,
    })))
}

fn obj(it: &Interp, v: &Value) -> PyResult<AnyGc> {
    v.as_any().ok_or_else(|| {
        it.type_error(format!(
            "cannot create weak reference to '{}' object",
            it.type_name(v)
        ))
    })
}

fn objects(it: &Interp, v: Vec<AnyGc>) -> Value {
    let items: Vec<Value> = v.into_iter().filter_map(Value::from_any).collect();
    it.new_list(items)
}

// ---------------------------------------------------------------- gc

/// Moves what reap saved under `DEBUG_SAVEALL` into the Python list `gc.garbage`.
pub fn sync_garbage(it: &Interp) {
    let saved = it.heap.garbage();
    if saved.is_empty() {
        return;
    }
    it.heap.clear_garbage();
    let list = it.modules.borrow().get("gc").and_then(|m| {
        if let Value::Module(m) = m {
            it.dict_get_str(&m.dict, &name("garbage"))
        } else {
            None
        }
    });
    if let Some(Value::List(l)) = list {
        let items: Vec<Value> = saved.into_iter().filter_map(Value::from_any).collect();
        l.items.borrow_mut().extend(items);
    }
}

/// `gc.collect(generation=2)`
pub fn gc_collect(it: &Interp, a: &[Value], kw: &[(Rc<str>, Value)]) -> PyResult {
    let g = match a.first().or(kw
        .iter()
        .find(|(k, _)| &**k == "generation")
        .map(|(_, v)| v))
    {
        Some(Value::Int(g)) => *g,
        None => 2,
        _ => return Err(it.type_error("an integer is required")),
    };
    if !(0..=2).contains(&g) {
        return Err(it.exc("ValueError", "invalid generation"));
    }
    let n = it.heap.collect(g as usize);
    sync_garbage(it);
    Ok(Value::Int(n as i64))
}

/// `gc.set_threshold(t0, t1=…, t2=…)`
pub fn gc_set_threshold(it: &Interp, a: &[Value], _: &[(Rc<str>, Value)]) -> PyResult {
    let cur = it.heap.get_threshold();
    let get = |i: usize| match a.get(i) {
        Some(Value::Int(x)) => *x as usize,
        _ => cur[i],
    };
    it.heap.set_threshold(get(0), get(1), get(2));
    Ok(Value::None)
}

/// `gc.get_stats()`
pub fn gc_get_stats(it: &Interp, _: &[Value], _: &[(Rc<str>, Value)]) -> PyResult {
    let stats = it.heap.get_stats();
    let mut out = Vec::new();
    for s in stats.iter() {
        let d = it.heap.alloc(Dict::default());
        it.dict_set(
            &d,
            Value::str("collections"),
            Value::Int(s.collections as i64),
        )?;
        it.dict_set(&d, Value::str("collected"), Value::Int(s.collected as i64))?;
        it.dict_set(
            &d,
            Value::str("uncollectable"),
            Value::Int(s.uncollectable as i64),
        )?;
        out.push(Value::Dict(d));
    }
    Ok(it.new_list(out))
}

/// `gc.get_objects(generation=None)`
pub fn gc_get_objects(it: &Interp, a: &[Value], kw: &[(Rc<str>, Value)]) -> PyResult {
    let g = match a.first().or(kw
        .iter()
        .find(|(k, _)| &**k == "generation")
        .map(|(_, v)| v))
    {
        Some(Value::Int(g)) => {
            if !(0..=2).contains(g) {
                return Err(it.exc("ValueError", "generation parameter must be less than the number of available generations (3)"));
            }
            Some(*g as usize)
        }
        _ => None,
    };
    let objs = it.heap.get_objects(g);
    Ok(objects(it, objs))
}

/// `gc.get_referrers(*objs)`
pub fn gc_get_referrers(it: &Interp, a: &[Value], _: &[(Rc<str>, Value)]) -> PyResult {
    let mut out = Vec::new();
    for v in a {
        if let Some(o) = v.as_any() {
            out.extend(it.heap.get_referrers(&o));
        }
    }
    Ok(objects(it, out))
}

/// The objects `o` refers to, at the Python level: the items of containers (atoms included,
/// as CPython lists them), else what reap's traversal reports.
fn py_referents(it: &Interp, v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::List(l) => out.extend(l.items.borrow().iter().cloned()),
        Value::Tuple(t) => out.extend(t.items.iter().cloned()),
        Value::Dict(d) => {
            let t = d.t.borrow();
            let all_str = t.iter().all(|e| matches!(e.key, Value::Str(_)));
            for e in t.iter() {
                out.push(e.value.clone());
                if !all_str {
                    out.push(e.key.clone());
                }
            }
        }
        Value::Set(s) => out.extend(s.t.borrow().keys()),
        Value::Instance(i) => {
            match &*i.dict.borrow() {
                InstDict::Inline(t) => out.extend(t.values()),
                InstDict::Obj(d) => out.push(Value::Dict(d.clone())),
            }
            out.push(Value::Class(i.class.clone()));
        }
        _ => {
            if let Some(o) = v.as_any() {
                out.extend(
                    it.heap
                        .get_referents(&o)
                        .into_iter()
                        .filter_map(Value::from_any),
                );
            }
        }
    }
}

/// `gc.get_referents(*objs)`
pub fn gc_get_referents(it: &Interp, a: &[Value], _: &[(Rc<str>, Value)]) -> PyResult {
    let mut out = Vec::new();
    for v in a {
        py_referents(it, v, &mut out);
    }
    Ok(it.new_list(out))
}

/// Whether CPython would have `v` tracked: containers of atoms only are untracked once a
/// collection has seen them (tuples) or from the start (dicts).
fn tracked_like_cpython(it: &Interp, v: &Value) -> bool {
    match v {
        Value::Dict(d) => {
            d.t.borrow()
                .iter()
                .any(|e| tracked_like_cpython(it, &e.key) || tracked_like_cpython(it, &e.value))
        }
        Value::Tuple(t) => {
            if t.items.is_empty() {
                return false;
            }
            t.born.get() == it.collections.get()
                || t.items.iter().any(|x| tracked_like_cpython(it, x))
        }
        Value::WeakRef(_) => true,
        _ => match v.as_any() {
            Some(o) => reap::is_tracked(&o),
            None => false,
        },
    }
}

/// `gc.is_tracked(obj)`: reap's tracking, with CPython's lazy tracking of dicts and tuples
/// of atoms emulated (reap tracks per type).
pub fn gc_is_tracked(it: &Interp, a: &[Value], _: &[(Rc<str>, Value)]) -> PyResult {
    let v = a
        .first()
        .ok_or_else(|| it.type_error("is_tracked() takes exactly one argument"))?;
    Ok(Value::Bool(tracked_like_cpython(it, v)))
}

/// `gc.is_finalized(obj)`
pub fn gc_is_finalized(it: &Interp, a: &[Value], _: &[(Rc<str>, Value)]) -> PyResult {
    let v = a
        .first()
        .ok_or_else(|| it.type_error("is_finalized() takes exactly one argument"))?;
    Ok(Value::Bool(match v.as_any() {
        Some(o) => Gc::is_finalized(&o),
        None => false,
    }))
}

/// `gc.set_debug(flags)`
pub fn gc_set_debug(it: &Interp, a: &[Value], _: &[(Rc<str>, Value)]) -> PyResult {
    match a.first() {
        Some(Value::Int(f)) => {
            it.heap
                .set_debug(reap::DebugFlags::from_bits_truncate(*f as u32));
            Ok(Value::None)
        }
        _ => Err(it.type_error("an integer is required")),
    }
}

/// Installs the collection callback that runs `gc.callbacks`.
pub fn install_gc_callbacks(interp: &Rc<Interp>) {
    let weak = Rc::downgrade(interp);
    interp
        .heap
        .add_collect_callback(Box::new(move |phase, info| {
            let Some(it) = weak.upgrade() else { return };
            if matches!(phase, CollectPhase::Stop) {
                it.collections.set(it.collections.get() + 1);
            }
            let cbs = it.gc_callbacks.items.borrow().clone();
            if cbs.is_empty() {
                return;
            }
            let phase = Value::str(match phase {
                CollectPhase::Start => "start",
                CollectPhase::Stop => "stop",
            });
            let d = it.heap.alloc(Dict::default());
            let _ = it.dict_set(
                &d,
                Value::str("generation"),
                Value::Int(info.generation as i64),
            );
            let _ = it.dict_set(
                &d,
                Value::str("collected"),
                Value::Int(info.collected as i64),
            );
            let _ = it.dict_set(
                &d,
                Value::str("uncollectable"),
                Value::Int(info.uncollectable as i64),
            );
            let d = Value::Dict(d);
            for cb in cbs {
                if let Err(e) = it.call(&cb, &[phase.clone(), d.clone()], &[]) {
                    let what = it.repr(&cb).unwrap_or_default();
                    it.unraisable(&format!("garbage collection callback {what}"), e);
                }
            }
        }));
}

// ---------------------------------------------------------------- weakref

/// `weakref.ref(obj, callback=None)`
pub fn wr_ref(it: &Interp, a: &[Value], _: &[(Rc<str>, Value)]) -> PyResult {
    let target = a
        .first()
        .ok_or_else(|| it.type_error("ref() takes at least 1 argument"))?;
    if let Value::WeakRef(_) = target {
        return Err(it.type_error(
            "cannot create weak reference to 'weakref' object (reap hands out no handle to a weak reference)",
        ));
    }
    let o = obj(it, target)?;
    let cb = a.get(1).cloned().unwrap_or(Value::None);
    if matches!(cb, Value::None) {
        return Ok(Value::WeakRef(Box::new(Weak::new(&o))));
    }
    // The callback is traced state; the closure captures nothing (the coming `Weak::with_callback`
    // takes exactly this form).
    let w = Weak::with_callback(&o, cb.clone(), |cb: &Value, w: &Weak<dyn Any>| {
        let Some(it) = Weak::user_data::<Interp>(w) else {
            return;
        };
        let wr = Value::WeakRef(Box::new(w.clone()));
        if let Err(e) = it.call(cb, &[wr], &[]) {
            let what = it.repr(cb).unwrap_or_default();
            it.unraisable(&what, e);
        }
    });
    // API: no `Weak::callback_state` getter yet: keep `__callback__` on the side, by address.
    let key = Weak::as_ptr(&w) as usize;
    let old = it.weak_callbacks.borrow_mut().insert(key, weak_of(&cb));
    drop(old);
    Ok(Value::WeakRef(Box::new(w)))
}

/// What `__callback__` keeps: a weak reference to the callback when it is a heap object (so the
/// side table keeps nothing alive), the value itself otherwise.
fn weak_of(cb: &Value) -> Value {
    match cb.as_any() {
        Some(o) => Value::WeakRef(Box::new(Weak::new(&o))),
        None => cb.clone(),
    }
}

/// `weakref.proxy(obj, callback=None)`: callback-less proxies are shared, as in CPython.
pub fn wr_proxy(it: &Interp, a: &[Value], _: &[(Rc<str>, Value)]) -> PyResult {
    let target = a
        .first()
        .ok_or_else(|| it.type_error("proxy() takes at least 1 argument"))?;
    let o = obj(it, target)?;
    let cb = a.get(1).cloned().unwrap_or(Value::None);
    let key = target.id();
    if matches!(cb, Value::None) {
        let existing = it.proxies.borrow().get(&key).and_then(|w| w.upgrade());
        if let Some(p) = existing {
            if let NativeKind::Proxy(w) = &p.kind {
                if w.upgrade().is_some_and(|t| Gc::ptr_eq(&t, &o)) {
                    return Ok(Value::Native(p));
                }
            }
        }
    }
    // API: reap's `WeakProxy::with_callback` takes a plain closure (untraced captures, and it
    // receives the weak reference, not the proxy): a weak reference with traced state instead.
    let shared = matches!(cb, Value::None);
    let (w, state) = weak_with_state(it, &o, cb);
    let n = it.heap.alloc(Native {
        kind: NativeKind::Proxy(w),
    });
    *state.me.borrow_mut() = Some(Weak::new(&n));
    if shared {
        it.proxies.borrow_mut().insert(key, Weak::new(&n));
    }
    Ok(Value::Native(n))
}

/// The referent of a proxy, or `ReferenceError`.
pub fn proxy_target(it: &Interp, p: &Weak<dyn Any>) -> PyResult {
    match p.upgrade().and_then(Value::from_any) {
        Some(v) => Ok(v),
        None => Err(it.exc(
            "ReferenceError",
            "weakly-referenced object no longer exists",
        )),
    }
}

/// `weakref.getweakrefcount(obj)`
pub fn wr_getweakrefcount(it: &Interp, a: &[Value], _: &[(Rc<str>, Value)]) -> PyResult {
    let v = a
        .first()
        .ok_or_else(|| it.type_error("getweakrefcount() takes exactly one argument"))?;
    Ok(Value::Int(match v.as_any() {
        Some(o) => Gc::weak_count(&o) as i64,
        None => 0,
    }))
}

/// `weakref.getweakrefs(obj)`
pub fn wr_getweakrefs(it: &Interp, a: &[Value], _: &[(Rc<str>, Value)]) -> PyResult {
    let v = a
        .first()
        .ok_or_else(|| it.type_error("getweakrefs() takes exactly one argument"))?;
    let refs = match v.as_any() {
        Some(o) => Gc::weak_refs(&o)
            .into_iter()
            .map(|w| Value::WeakRef(Box::new(w)))
            .collect(),
        None => Vec::new(),
    };
    Ok(it.new_list(refs))
}

/// `weakref.WeakValueDictionary()`
pub fn wr_wvd(it: &Interp, a: &[Value], _: &[(Rc<str>, Value)]) -> PyResult {
    let m: WeakValueMap<HKey, dyn Any> = WeakValueMap::new();
    let d = it.new_native(NativeKind::WeakValueDict(m));
    if let Some(src) = a.first() {
        for (k, v) in it.items_of(src)? {
            it.setitem(&d, k, v)?;
        }
    }
    Ok(d)
}

/// `weakref.WeakKeyDictionary()`
pub fn wr_wkd(it: &Interp, a: &[Value], _: &[(Rc<str>, Value)]) -> PyResult {
    let d = it.new_native(NativeKind::WeakKeyDict(WeakKeyMap::with_key_eq()));
    if let Some(src) = a.first() {
        for (k, v) in it.items_of(src)? {
            it.setitem(&d, k, v)?;
        }
    }
    Ok(d)
}

/// `weakref.WeakSet()`
pub fn wr_weakset(it: &Interp, a: &[Value], _: &[(Rc<str>, Value)]) -> PyResult {
    let s = it.new_native(NativeKind::WeakSet(WeakKeyMap::with_key_eq()));
    if let Some(src) = a.first() {
        for v in it.collect(src)? {
            it.call_method(&s, "add", &[v])?;
        }
    }
    Ok(s)
}

/// `weakref.finalize(obj, func, *args, **kwargs)`
pub fn wr_finalize(it: &Interp, a: &[Value], kw: &[(Rc<str>, Value)]) -> PyResult {
    if a.len() < 2 {
        return Err(it.type_error("finalize() takes at least 2 arguments"));
    }
    let o = obj(it, &a[0])?;
    let info: Rc<RefCell<Option<FinInfo>>> = Rc::new(RefCell::new(Some((
        a[1].clone(),
        a[2..].to_vec(),
        kw.to_vec(),
    ))));
    let explicit = Rc::new(Cell::new(false));
    let result: FinResult = Rc::new(RefCell::new(None));
    let me = it.heap.user_data::<Interp>().map(|r| Rc::downgrade(&r));
    let id = NEXT_FIN.with(|n| {
        let id = n.get();
        n.set(id + 1);
        id
    });
    let (ex, res, inf) = (explicit.clone(), result.clone(), info.clone());
    let fin = reap::finalize(&o, move || {
        let Some(it) = me.as_ref().and_then(|w| w.upgrade()) else {
            return;
        };
        let taken = inf.borrow_mut().take();
        let entry = {
            let mut reg = it.finalizers.borrow_mut();
            reg.iter()
                .position(|(i, _)| *i == id)
                .map(|p| reg.remove(p))
        };
        if let Some((f, args, kwargs)) = taken {
            let r = it.call(&f, &args, &kwargs);
            if ex.get() {
                *res.borrow_mut() = Some(r.map_err(|e| Box::new(e.0) as Box<dyn Any>));
            } else if let Err(e) = r {
                let what = format!(
                    "<finalize object; dead>: {}",
                    it.repr(&f).unwrap_or_default()
                );
                it.unraisable(&what, e);
            }
            drop((f, args, kwargs));
        }
        drop(entry);
    });
    let v = it.new_native(NativeKind::Finalize(FinalizeObj {
        f: fin,
        id,
        info,
        explicit,
        result,
        atexit: Cell::new(true),
    }));
    it.finalizers.borrow_mut().push((id, v.clone()));
    Ok(v)
}

/// A weak reference whose callback calls `cb(me)`, `me` being the native object made next
/// (set into the returned state).
fn weak_with_state(it: &Interp, o: &AnyGc, cb: Value) -> (Weak<dyn Any>, Gc<CbState>) {
    let state = it.heap.alloc(CbState {
        cb,
        me: RefCell::new(None),
        fired: Cell::new(false),
    });
    let w = Weak::with_callback(o, state.clone(), |st: &Gc<CbState>, _w: &Weak<dyn Any>| {
        if matches!(st.cb, Value::None) || st.fired.replace(true) {
            return;
        }
        let Some(it) = Gc::user_data::<Interp>(st) else {
            return;
        };
        let me = st
            .me
            .borrow()
            .as_ref()
            .and_then(|m| m.upgrade())
            .map(Value::Native)
            .unwrap_or(Value::None);
        if let Err(e) = it.call(&st.cb, &[me], &[]) {
            let what = it.repr(&st.cb).unwrap_or_default();
            it.unraisable(&what, e);
        }
    });
    (w, state)
}

/// `weakref.WeakMethod(method, callback=None)`
pub fn wr_weakmethod(it: &Interp, a: &[Value], _: &[(Rc<str>, Value)]) -> PyResult {
    let Some(Value::Method(m)) = a.first() else {
        return Err(it.type_error("argument should be a bound method"));
    };
    // API: reap's `WeakMethod` binds a Rust `fn(&T) -> R`; a Python method is a function object
    // held weakly next to its receiver, so this is two reap weak references.
    let ro = obj(it, &m.recv)?;
    let fo = obj(it, &m.func)?;
    let cb = a.get(1).cloned().unwrap_or(Value::None);
    if matches!(cb, Value::None) {
        let recv = Weak::new(&ro);
        let func = Weak::new(&fo);
        return Ok(it.new_native(NativeKind::WeakMethod { recv, func }));
    }
    let (recv, state) = weak_with_state(it, &ro, cb);
    let func = Weak::with_callback(
        &fo,
        state.clone(),
        |st: &Gc<CbState>, _w: &Weak<dyn Any>| {
            if st.fired.replace(true) {
                return;
            }
            let Some(it) = Gc::user_data::<Interp>(st) else {
                return;
            };
            let me = st
                .me
                .borrow()
                .as_ref()
                .and_then(|m| m.upgrade())
                .map(Value::Native)
                .unwrap_or(Value::None);
            if let Err(e) = it.call(&st.cb, &[me], &[]) {
                let what = it.repr(&st.cb).unwrap_or_default();
                it.unraisable(&what, e);
            }
        },
    );
    let n = it.heap.alloc(Native {
        kind: NativeKind::WeakMethod { recv, func },
    });
    *state.me.borrow_mut() = Some(Weak::new(&n));
    Ok(Value::Native(n))
}

// ---------------------------------------------------------------- sys

/// `sys.getrefcount(obj)`: reap's strong count (the argument being passed counts, as in
/// CPython).
pub fn sys_getrefcount(it: &Interp, a: &[Value], _: &[(Rc<str>, Value)]) -> PyResult {
    let v = a
        .first()
        .ok_or_else(|| it.type_error("getrefcount() takes exactly one argument"))?;
    Ok(Value::Int(match v.as_any() {
        Some(o) => Gc::strong_count(&o) as i64 - 1,
        None => 1000,
    }))
}

// ---------------------------------------------------------------- native objects

/// Type name of a native object.
pub fn native_type_name(k: &NativeKind) -> &'static str {
    match k {
        NativeKind::BoundBuiltin { .. } => "builtin_function_or_method",
        NativeKind::Iter(_) => "iterator",
        NativeKind::Range { .. } => "range",
        NativeKind::StaticMethod(_) => "staticmethod",
        NativeKind::ClassMethod(_) => "classmethod",
        NativeKind::Property(..) => "property",
        NativeKind::GetSet(_) => "getset_descriptor",
        NativeKind::WeakValueDict(_) => "WeakValueDictionary",
        NativeKind::WeakKeyDict(_) => "WeakKeyDictionary",
        NativeKind::WeakSet(_) => "WeakSet",
        NativeKind::Proxy(_) => "weakproxy",
        NativeKind::Finalize(_) => "finalize",
        NativeKind::WeakMethod { .. } => "WeakMethod",
        NativeKind::Object => "object",
        NativeKind::Super(..) => "super",
        NativeKind::UnboundBuiltin { .. } => "method_descriptor",
        NativeKind::Slice(..) => "slice",
        NativeKind::Stream(_) => "TextIOWrapper",
        NativeKind::DictView(_, 0) => "dict_keys",
        NativeKind::DictView(_, 1) => "dict_values",
        NativeKind::DictView(..) => "dict_items",
    }
}

/// `repr` of a native object.
pub fn native_repr(it: &Interp, v: &Value, n: &Native) -> PyResult<String> {
    Ok(match &n.kind {
        NativeKind::Range { start, stop, step } => {
            if *step == 1 {
                format!("range({start}, {stop})")
            } else {
                format!("range({start}, {stop}, {step})")
            }
        }
        NativeKind::Proxy(p) => match p.upgrade().and_then(Value::from_any) {
            Some(o) => format!(
                "<weakproxy at {} to {} at {}>",
                addr(v.id()),
                it.type_name(&o),
                addr(o.id())
            ),
            None => format!("<weakproxy at {}; dead>", addr(v.id())),
        },
        NativeKind::WeakValueDict(_) => format!("<WeakValueDictionary at {}>", addr(v.id())),
        NativeKind::WeakKeyDict(_) => format!("<WeakKeyDictionary at {}>", addr(v.id())),
        NativeKind::WeakSet(_) => {
            let items = native_iter(it, n)?;
            let mut parts = Vec::new();
            for i in &items {
                parts.push(it.repr(i)?);
            }
            format!("{{{}}}", parts.join(", "))
        }
        NativeKind::Finalize(f) => {
            if f.f.alive() {
                match f.f.peek().and_then(Value::from_any) {
                    Some(o) => format!(
                        "<finalize object at {}; for '{}' at {}>",
                        addr(v.id()),
                        it.type_name(&o),
                        addr(o.id())
                    ),
                    None => format!("<finalize object at {}; dead>", addr(v.id())),
                }
            } else {
                format!("<finalize object at {}; dead>", addr(v.id()))
            }
        }
        NativeKind::BoundBuiltin { recv, name } => {
            format!(
                "<built-in method {name} of {} object at {}>",
                it.type_name(recv),
                addr(recv.id())
            )
        }
        NativeKind::Object => format!("<object object at {}>", addr(v.id())),
        NativeKind::DictView(d, k) => {
            let inner = match k {
                0 => it.repr(&it.new_list(d.t.borrow().keys()))?,
                1 => it.repr(&it.new_list(d.t.borrow().values()))?,
                _ => {
                    let items = native_iter(it, n)?;
                    it.repr(&it.new_list(items))?
                }
            };
            format!("{}({inner})", native_type_name(&n.kind))
        }
        NativeKind::Slice(a, b2, c) => {
            format!("slice({}, {}, {})", it.repr(a)?, it.repr(b2)?, it.repr(c)?)
        }
        k => format!("<{} object at {}>", native_type_name(k), addr(v.id())),
    })
}

/// Items of an iterable native object (snapshot).
pub fn native_iter(it: &Interp, n: &Native) -> PyResult<Vec<Value>> {
    Ok(match &n.kind {
        NativeKind::WeakValueDict(m) => m.keys().map(|k| k.0).collect(),
        NativeKind::WeakKeyDict(m) => m.keys().filter_map(Value::from_any).collect(),
        NativeKind::WeakSet(m) => m.keys().filter_map(Value::from_any).collect(),
        NativeKind::DictView(d, 0) => d.t.borrow().keys(),
        NativeKind::DictView(d, 1) => d.t.borrow().values(),
        NativeKind::DictView(d, _) => {
            let pairs: Vec<(Value, Value)> =
                d.t.borrow()
                    .iter()
                    .map(|e| (e.key.clone(), e.value.clone()))
                    .collect();
            pairs
                .into_iter()
                .map(|(k, v)| it.new_tuple(vec![k, v]))
                .collect()
        }
        NativeKind::Proxy(p) => {
            let t = proxy_target(it, p)?;
            it.collect(&t)?
        }
        _ => {
            return Err(it.type_error(format!(
                "'{}' object is not iterable",
                native_type_name(&n.kind)
            )))
        }
    })
}

/// `len()` of a native object.
pub fn native_len(it: &Interp, v: &Value, n: &Native) -> PyResult<usize> {
    Ok(match &n.kind {
        NativeKind::WeakValueDict(m) => m.len(),
        NativeKind::WeakKeyDict(m) => m.len(),
        NativeKind::WeakSet(m) => m.len(),
        NativeKind::Range { start, stop, step } => b::range_len(*start, *stop, *step) as usize,
        NativeKind::DictView(d, _) => d.t.borrow().len(),
        NativeKind::Proxy(p) => {
            let t = proxy_target(it, p)?;
            b::len(it, &t)?
        }
        _ => {
            return Err(it.type_error(format!("object of type '{}' has no len()", it.type_name(v))))
        }
    })
}

/// Raises the exception a key's `__hash__`/`__eq__` parked during a weak-keyed map operation.
fn key_check<T>(it: &Interp, r: PyResult<T>) -> PyResult<T> {
    match it.key_error.borrow_mut().take() {
        Some(e) => Err(e),
        None => r,
    }
}

/// `needle in native`
pub fn native_contains(it: &Interp, n: &Native, needle: &Value) -> PyResult<bool> {
    let r = native_contains_inner(it, n, needle);
    key_check(it, r)
}

fn native_contains_inner(it: &Interp, n: &Native, needle: &Value) -> PyResult<bool> {
    Ok(match &n.kind {
        NativeKind::WeakValueDict(m) => m.contains_key(&HKey(needle.clone())),
        NativeKind::WeakKeyDict(m) => match needle.as_any() {
            Some(o) => m.contains_key(&o),
            None => false,
        },
        NativeKind::WeakSet(m) => match needle.as_any() {
            Some(o) => m.contains_key(&o),
            None => false,
        },
        NativeKind::Range { start, stop, step } => match needle {
            Value::Int(i) => {
                let inr = if *step > 0 {
                    *i >= *start && *i < *stop
                } else {
                    *i <= *start && *i > *stop
                };
                inr && (i - start) % step == 0
            }
            _ => false,
        },
        NativeKind::DictView(d, 0) => it.dict_get(d, needle)?.is_some(),
        NativeKind::Proxy(p) => {
            let t = proxy_target(it, p)?;
            it.contains(&t, needle)?
        }
        _ => {
            let items = native_iter(it, n)?;
            for i in items {
                if it.eq(&i, needle)? {
                    return Ok(true);
                }
            }
            false
        }
    })
}

fn key_error(it: &Interp, k: &Value) -> crate::interp::Exc {
    let cls = it.types.exceptions["KeyError"].clone();
    crate::interp::Exc(it.new_exception(cls, vec![k.clone()]))
}

/// `native[i]`
pub fn native_getitem(it: &Interp, v: &Value, n: &Native, i: &Value) -> PyResult {
    let r = native_getitem_inner(it, v, n, i);
    key_check(it, r)
}

fn native_getitem_inner(it: &Interp, v: &Value, n: &Native, i: &Value) -> PyResult {
    match &n.kind {
        NativeKind::WeakValueDict(m) => match m.get(&HKey(i.clone())).and_then(Value::from_any) {
            Some(x) => Ok(x),
            None => Err(key_error(it, i)),
        },
        NativeKind::WeakKeyDict(m) => {
            let o = i.as_any().ok_or_else(|| key_error(it, i))?;
            m.get(&o).ok_or_else(|| key_error(it, i))
        }
        NativeKind::Range { start, stop, step } => {
            let len = b::range_len(*start, *stop, *step);
            match i {
                Value::Int(k) => {
                    let k = if *k < 0 { k + len } else { *k };
                    if k < 0 || k >= len {
                        return Err(it.exc("IndexError", "range object index out of range"));
                    }
                    Ok(Value::Int(start + k * step))
                }
                _ => Err(it.type_error("range indices must be integers")),
            }
        }
        NativeKind::Proxy(p) => {
            let t = proxy_target(it, p)?;
            it.getitem(&t, i)
        }
        _ => Err(it.type_error(format!("'{}' object is not subscriptable", it.type_name(v)))),
    }
}

/// `native[i] = x`
pub fn native_setitem(it: &Interp, v: &Value, n: &Native, i: Value, x: Value) -> PyResult<()> {
    let r = native_setitem_inner(it, v, n, i, x);
    key_check(it, r)
}

fn native_setitem_inner(it: &Interp, v: &Value, n: &Native, i: Value, x: Value) -> PyResult<()> {
    match &n.kind {
        NativeKind::WeakValueDict(m) => {
            it.hash(&i)?;
            let o = obj(it, &x)?;
            let old = m.insert(HKey(i), &o);
            drop(old);
            Ok(())
        }
        NativeKind::WeakKeyDict(m) => {
            let o = obj(it, &i)?;
            let old = m.insert(&o, x);
            drop(old);
            Ok(())
        }
        NativeKind::Proxy(p) => {
            let t = proxy_target(it, p)?;
            it.setitem(&t, i, x)
        }
        _ => Err(it.type_error(format!(
            "'{}' object does not support item assignment",
            it.type_name(v)
        ))),
    }
}

/// `del native[i]`
pub fn native_delitem(it: &Interp, v: &Value, n: &Native, i: &Value) -> PyResult<()> {
    let r = native_delitem_inner(it, v, n, i);
    key_check(it, r)
}

fn native_delitem_inner(it: &Interp, v: &Value, n: &Native, i: &Value) -> PyResult<()> {
    match &n.kind {
        NativeKind::WeakValueDict(m) => match m.remove(&HKey(i.clone())) {
            Some(old) => {
                drop(old);
                Ok(())
            }
            None => Err(key_error(it, i)),
        },
        NativeKind::WeakKeyDict(m) => {
            let o = i.as_any().ok_or_else(|| key_error(it, i))?;
            match m.remove(&o) {
                Some(old) => {
                    drop(old);
                    Ok(())
                }
                None => Err(key_error(it, i)),
            }
        }
        NativeKind::Proxy(p) => {
            let t = proxy_target(it, p)?;
            it.delitem(&t, i)
        }
        _ => Err(it.type_error(format!(
            "'{}' object does not support item deletion",
            it.type_name(v)
        ))),
    }
}

/// Attribute access on native objects.
pub fn native_getattr(it: &Interp, v: &Value, n: &Native, a: &Name) -> PyResult<Option<Value>> {
    match &n.kind {
        NativeKind::Proxy(p) => {
            let t = proxy_target(it, p)?;
            it.getattr(&t, a).map(Some)
        }
        NativeKind::Finalize(f) => Ok(match &*a.s {
            "alive" => Some(Value::Bool(f.f.alive())),
            "atexit" => Some(Value::Bool(f.atexit.get())),
            _ => Some(it.new_native(NativeKind::BoundBuiltin {
                recv: v.clone(),
                name: a.s.clone(),
            }))
            .filter(|_| matches!(&*a.s, "peek" | "detach")),
        }),
        NativeKind::Super(cls, o) => it.super_lookup(cls, o, a).map(Some),
        NativeKind::Range { start, stop, step } => Ok(match &*a.s {
            "start" => Some(Value::Int(*start)),
            "stop" => Some(Value::Int(*stop)),
            "step" => Some(Value::Int(*step)),
            _ => None,
        }),
        NativeKind::Property(g, _) if &*a.s == "fget" => Ok(Some(g.clone())),
        NativeKind::Property(g, s) if &*a.s == "setter" => {
            let _ = s;
            Ok(Some(it.new_native(NativeKind::BoundBuiltin {
                recv: v.clone(),
                name: Rc::from(format!("__setter__{}", g.id()).as_str()),
            })))
        }
        NativeKind::Stream(_) if &*a.s == "write" || &*a.s == "flush" => {
            Ok(Some(it.new_native(NativeKind::BoundBuiltin {
                recv: v.clone(),
                name: a.s.clone(),
            })))
        }
        NativeKind::UnboundBuiltin { name, .. } if &*a.s == "__name__" => {
            Ok(Some(Value::Str(name.clone())))
        }
        NativeKind::GetSet(c) if &*a.s == "__objclass__" => Ok(Some(Value::Class(c.clone()))),
        _ => {
            if &*a.s == "__class__" {
                return Ok(Some(Value::Class(it.class_of(v))));
            }
            let has = match &n.kind {
                NativeKind::WeakValueDict(_) | NativeKind::WeakKeyDict(_) => {
                    matches!(
                        &*a.s,
                        "get"
                            | "keys"
                            | "values"
                            | "items"
                            | "pop"
                            | "popitem"
                            | "setdefault"
                            | "update"
                            | "clear"
                            | "copy"
                            | "keyrefs"
                            | "valuerefs"
                            | "__len__"
                    )
                }
                NativeKind::WeakSet(_) => matches!(
                    &*a.s,
                    "add" | "discard" | "remove" | "clear" | "copy" | "pop" | "update" | "__len__"
                ),
                NativeKind::Iter(_) => &*a.s == "__next__",
                NativeKind::WeakMethod { .. } => false,
                _ => false,
            };
            if has {
                return Ok(Some(it.new_native(NativeKind::BoundBuiltin {
                    recv: v.clone(),
                    name: a.s.clone(),
                })));
            }
            Ok(None)
        }
    }
}

/// Attribute assignment on native objects.
pub fn native_setattr(it: &Interp, n: &Native, a: &Name, x: Value) -> PyResult<()> {
    match &n.kind {
        NativeKind::Proxy(p) => {
            let t = proxy_target(it, p)?;
            it.setattr(&t, a, x)
        }
        NativeKind::Finalize(f) if &*a.s == "atexit" => {
            let on = it.truthy(&x)?;
            f.atexit.set(on);
            Ok(())
        }
        _ => Err(it.exc(
            "AttributeError",
            format!("object has no attribute '{}'", a.s),
        )),
    }
}

/// Calling a native object.
pub fn call_native(it: &Interp, n: &Gc<Native>, a: &[Value], kw: &[(Rc<str>, Value)]) -> PyResult {
    match &n.kind {
        NativeKind::Finalize(f) => {
            f.explicit.set(true);
            let ran = f.f.call();
            f.explicit.set(false);
            let r = f.result.borrow_mut().take();
            let _ = ran;
            match r {
                Some(Ok(v)) => Ok(v),
                Some(Err(e)) => match e.downcast::<Gc<Instance>>() {
                    Ok(i) => Err(crate::interp::Exc(*i)),
                    Err(_) => Ok(Value::None),
                },
                None => Ok(Value::None),
            }
        }
        NativeKind::WeakMethod { recv, func } => {
            match (
                recv.upgrade().and_then(Value::from_any),
                func.upgrade().and_then(Value::from_any),
            ) {
                (Some(r), Some(f)) => Ok(it.new_method(r, f)),
                _ => Ok(Value::None),
            }
        }
        NativeKind::Proxy(p) => {
            let t = proxy_target(it, p)?;
            it.call(&t, a, kw)
        }
        NativeKind::StaticMethod(f) | NativeKind::ClassMethod(f) => it.call(f, a, kw),
        NativeKind::UnboundBuiltin { name, .. } => match a.split_first() {
            Some((recv, rest)) => b::call_native_method(it, recv, name, rest, kw),
            None => Err(it.type_error("descriptor needs an argument")),
        },
        NativeKind::Object => Err(it.type_error("'object' object is not callable")),
        _ => Err(it.type_error(format!(
            "'{}' object is not callable",
            native_type_name(&n.kind)
        ))),
    }
}

/// Methods of native objects.
pub fn native_method(
    it: &Interp,
    v: &Value,
    n: &Native,
    m: &str,
    a: &[Value],
    kw: &[(Rc<str>, Value)],
) -> PyResult {
    let r = native_method_inner(it, v, n, m, a, kw);
    key_check(it, r)
}

fn native_method_inner(
    it: &Interp,
    v: &Value,
    n: &Native,
    m: &str,
    a: &[Value],
    kw: &[(Rc<str>, Value)],
) -> PyResult {
    let arg = |i: usize| a.get(i).cloned().unwrap_or(Value::None);
    match &n.kind {
        NativeKind::WeakValueDict(map) => match m {
            "get" => Ok(map
                .get(&HKey(arg(0)))
                .and_then(Value::from_any)
                .unwrap_or(arg(1))),
            "keys" => Ok(it.new_list(map.keys().map(|k| k.0).collect())),
            "values" => Ok(it.new_list(map.values().filter_map(Value::from_any).collect())),
            "items" => {
                let items: Vec<Value> = map
                    .iter()
                    .filter_map(|(k, v)| Value::from_any(v).map(|v| (k.0, v)))
                    .map(|(k, v)| it.new_tuple(vec![k, v]))
                    .collect();
                Ok(it.new_list(items))
            }
            "pop" => match map.remove(&HKey(arg(0))).and_then(Value::from_any) {
                Some(x) => Ok(x),
                None if a.len() > 1 => Ok(arg(1)),
                None => Err(key_error(it, &arg(0))),
            },
            "setdefault" => {
                if let Some(x) = map.get(&HKey(arg(0))).and_then(Value::from_any) {
                    return Ok(x);
                }
                it.setitem(v, arg(0), arg(1))?;
                Ok(arg(1))
            }
            "update" => {
                for (k, x) in it.items_of(&arg(0))? {
                    it.setitem(v, k, x)?;
                }
                Ok(Value::None)
            }
            "clear" => {
                map.clear();
                Ok(Value::None)
            }
            "copy" => {
                let m2: WeakValueMap<HKey, dyn Any> = WeakValueMap::new();
                for (k, o) in map.iter() {
                    m2.insert(k, &o);
                }
                Ok(it.new_native(NativeKind::WeakValueDict(m2)))
            }
            "popitem" => {
                let first = map.iter().next();
                match first {
                    Some((k, o)) => {
                        map.remove(&k);
                        let v = Value::from_any(o).unwrap_or(Value::None);
                        Ok(it.new_tuple(vec![k.0, v]))
                    }
                    None => Err(it.exc("KeyError", "popitem(): dictionary is empty")),
                }
            }
            "valuerefs" => {
                let refs: Vec<Value> = map
                    .values()
                    .map(|o| Value::WeakRef(Box::new(Weak::new(&o))))
                    .collect();
                Ok(it.new_list(refs))
            }
            "__len__" => Ok(Value::Int(map.len() as i64)),
            _ => Err(it.attr_error(v, m)),
        },
        NativeKind::WeakKeyDict(map) => match m {
            "get" => Ok(arg(0).as_any().and_then(|o| map.get(&o)).unwrap_or(arg(1))),
            "keys" => Ok(it.new_list(map.keys().filter_map(Value::from_any).collect())),
            "values" => Ok(it.new_list(map.values().collect())),
            "items" => {
                let items: Vec<Value> = map
                    .iter()
                    .filter_map(|(k, v)| Value::from_any(k).map(|k| (k, v)))
                    .map(|(k, v)| it.new_tuple(vec![k, v]))
                    .collect();
                Ok(it.new_list(items))
            }
            "pop" => match arg(0).as_any().and_then(|o| map.remove(&o)) {
                Some(x) => Ok(x),
                None if a.len() > 1 => Ok(arg(1)),
                None => Err(key_error(it, &arg(0))),
            },
            "setdefault" => {
                let o = obj(it, &arg(0))?;
                Ok(map.get_or_insert(&o, arg(1)))
            }
            "update" => {
                for (k, x) in it.items_of(&arg(0))? {
                    it.setitem(v, k, x)?;
                }
                Ok(Value::None)
            }
            "clear" => {
                map.clear();
                Ok(Value::None)
            }
            "copy" => {
                let m2: WeakKeyMap<dyn Any, Value, crate::value::PyKeyEq> =
                    WeakKeyMap::with_key_eq();
                for (k, x) in map.iter() {
                    m2.insert(&k, x);
                }
                Ok(it.new_native(NativeKind::WeakKeyDict(m2)))
            }
            "popitem" => {
                let first = map.iter().next();
                match first {
                    Some((k, x)) => {
                        map.remove(&k);
                        let kv = Value::from_any(k).unwrap_or(Value::None);
                        Ok(it.new_tuple(vec![kv, x]))
                    }
                    None => Err(it.exc("KeyError", "popitem(): dictionary is empty")),
                }
            }
            "keyrefs" => {
                let refs: Vec<Value> = map
                    .keys()
                    .map(|o| Value::WeakRef(Box::new(Weak::new(&o))))
                    .collect();
                Ok(it.new_list(refs))
            }
            "__len__" => Ok(Value::Int(map.len() as i64)),
            _ => Err(it.attr_error(v, m)),
        },
        NativeKind::WeakSet(set) => match m {
            "add" => {
                let o = obj(it, &arg(0))?;
                set.insert(&o, ());
                Ok(Value::None)
            }
            "discard" | "remove" => {
                let found = arg(0).as_any().and_then(|o| set.remove(&o));
                if found.is_none() && m == "remove" {
                    return Err(key_error(it, &arg(0)));
                }
                Ok(Value::None)
            }
            "clear" => {
                set.clear();
                Ok(Value::None)
            }
            "update" => {
                for x in it.collect(&arg(0))? {
                    let o = obj(it, &x)?;
                    set.insert(&o, ());
                }
                Ok(Value::None)
            }
            "copy" => {
                let s = it.new_native(NativeKind::WeakSet(WeakKeyMap::with_key_eq()));
                if let Value::Native(nn) = &s {
                    if let NativeKind::WeakSet(ns) = &nn.kind {
                        for k in set.keys() {
                            ns.insert(&k, ());
                        }
                    }
                }
                Ok(s)
            }
            "pop" => match set.keys().next() {
                Some(k) => {
                    set.remove(&k);
                    Ok(Value::from_any(k).unwrap_or(Value::None))
                }
                None => Err(it.exc("KeyError", "pop from empty WeakSet")),
            },
            "__len__" => Ok(Value::Int(set.len() as i64)),
            _ => Err(it.attr_error(v, m)),
        },
        NativeKind::Finalize(f) => match m {
            "peek" | "detach" => {
                let target = f.f.peek().and_then(Value::from_any);
                if !f.f.alive() {
                    return Ok(Value::None);
                }
                let info = if m == "detach" {
                    let d = f.f.detach();
                    let info = f.info.borrow_mut().take();
                    drop(d);
                    let entry = {
                        let mut reg = it.finalizers.borrow_mut();
                        reg.iter()
                            .position(|(i, _)| *i == f.id)
                            .map(|p| reg.remove(p))
                    };
                    drop(entry);
                    info
                } else {
                    f.info.borrow().clone()
                };
                let Some(target) = target else {
                    return Ok(Value::None);
                };
                let (func, args, kwargs) = info.unwrap_or((Value::None, vec![], vec![]));
                let kd = it.heap.alloc(Dict::default());
                for (k, x) in kwargs {
                    it.dict_set(&kd, Value::Str(k), x)?;
                }
                let args = it.new_tuple(args);
                Ok(it.new_tuple(vec![target, func, args, Value::Dict(kd)]))
            }
            _ => Err(it.attr_error(v, m)),
        },
        NativeKind::Iter(st) if m == "__next__" => {
            let mut inner = std::mem::replace(&mut *st.borrow_mut(), IterState::Done);
            let r = it.next(&mut inner);
            *st.borrow_mut() = inner;
            match r? {
                Some(x) => Ok(x),
                None => Err(it.exc("StopIteration", "")),
            }
        }
        NativeKind::Stream(s) => match m {
            "write" => {
                let text = it.to_str(&arg(0))?;
                if *s == 2 {
                    it.write_err(&text);
                } else {
                    it.write_out(&text);
                }
                Ok(Value::Int(text.chars().count() as i64))
            }
            "flush" => {
                it.flush();
                Ok(Value::None)
            }
            _ => Err(it.attr_error(v, m)),
        },
        NativeKind::Property(g, _) if m.starts_with("__setter__") => {
            Ok(it.new_native(NativeKind::Property(g.clone(), arg(0))))
        }
        NativeKind::DictView(d, _) => {
            let _ = (d, kw);
            Err(it.attr_error(v, m))
        }
        _ => Err(it.attr_error(v, m)),
    }
}

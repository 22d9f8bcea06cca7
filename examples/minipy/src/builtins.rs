//! Built-in functions, the methods of the built-in types, operators on immediates, `repr`.

use std::cell::RefCell;
use std::rc::Rc;

use reap::Gc;

use crate::compile::{BinOp, CmpOp, Name};
use crate::interp::{is_subclass, Interp, PyResult};
use crate::table::Table;
use crate::value::*;

/// A built-in function.
pub type BuiltinFn = fn(&Interp, &[Value], &[(Rc<str>, Value)]) -> PyResult;

/// An entry of the built-in table: its name, its module (`None`: builtins), its code.
pub struct BuiltinDef {
    /// Name.
    pub name: &'static str,
    /// Module (`None` for builtins).
    pub module: Option<&'static str>,
    /// Code.
    pub f: BuiltinFn,
}

macro_rules! builtins {
    ($( $id:ident = ($module:expr, $name:expr, $f:expr) ),* $(,)?) => {
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        #[repr(u16)]
        enum Ids { $( $id ),* }
        $( #[allow(missing_docs)] pub const $id: BuiltinId = BuiltinId(Ids::$id as u16); )*
        /// The table of built-in functions.
        pub static BUILTINS: &[BuiltinDef] = &[ $( BuiltinDef { name: $name, module: $module, f: $f } ),* ];
    };
}

builtins! {
    NOT_IMPLEMENTED = (None, "NotImplemented", |it, _, _| Err(it.type_error("NotImplemented is not callable"))),
    NOOP = (None, "__init__", |_, _, _| Ok(Value::None)),
    PRINT = (None, "print", b_print),
    LEN = (None, "len", |it, a, _| { arity(it, "len", a, 1)?; Ok(Value::Int(len(it, &a[0])? as i64)) }),
    REPR = (None, "repr", |it, a, _| { arity(it, "repr", a, 1)?; Ok(Value::str(&it.repr(&a[0])?)) }),
    SORTED = (None, "sorted", b_sorted),
    ISINSTANCE = (None, "isinstance", b_isinstance),
    ISSUBCLASS = (None, "issubclass", b_issubclass),
    HASATTR = (None, "hasattr", |it, a, _| { arity(it, "hasattr", a, 2)?; let n = name_arg(it, &a[1])?; match it.getattr(&a[0], &n) { Ok(_) => Ok(Value::Bool(true)), Err(e) if is_subclass(&e.0.class, &it.types.exceptions["AttributeError"]) => Ok(Value::Bool(false)), Err(e) => Err(e) } }),
    GETATTR = (None, "getattr", b_getattr),
    SETATTR = (None, "setattr", |it, a, _| { arity(it, "setattr", a, 3)?; let n = name_arg(it, &a[1])?; it.setattr(&a[0], &n, a[2].clone())?; Ok(Value::None) }),
    DELATTR = (None, "delattr", |it, a, _| { arity(it, "delattr", a, 2)?; let n = name_arg(it, &a[1])?; it.delattr(&a[0], &n)?; Ok(Value::None) }),
    ID = (None, "id", |it, a, _| { arity(it, "id", a, 1)?; Ok(Value::Int(a[0].id() as i64)) }),
    HASH = (None, "hash", |it, a, _| { arity(it, "hash", a, 1)?; Ok(Value::Int(it.hash(&a[0])? as i64)) }),
    ENUMERATE = (None, "enumerate", b_enumerate),
    ZIP = (None, "zip", b_zip),
    MIN = (None, "min", |it, a, kw| b_minmax(it, a, kw, true)),
    MAX = (None, "max", |it, a, kw| b_minmax(it, a, kw, false)),
    SUM = (None, "sum", b_sum),
    ABS = (None, "abs", |it, a, _| { arity(it, "abs", a, 1)?; match &a[0] { Value::Int(i) => i.checked_abs().map(Value::Int).ok_or_else(|| it.overflow()), Value::Bool(b) => Ok(Value::Int(*b as i64)), Value::Float(f) => Ok(Value::Float(f.abs())), v => it.call_method(v, "__abs__", &[]) } }),
    ANY = (None, "any", |it, a, _| { arity(it, "any", a, 1)?; let mut st = it.iter(&a[0])?; while let Some(v) = it.next(&mut st)? { if it.truthy(&v)? { return Ok(Value::Bool(true)); } } Ok(Value::Bool(false)) }),
    ALL = (None, "all", |it, a, _| { arity(it, "all", a, 1)?; let mut st = it.iter(&a[0])?; while let Some(v) = it.next(&mut st)? { if !it.truthy(&v)? { return Ok(Value::Bool(false)); } } Ok(Value::Bool(true)) }),
    ITER = (None, "iter", |it, a, _| { arity(it, "iter", a, 1)?; b_iter(it, &a[0]) }),
    NEXT = (None, "next", b_next),
    REVERSED = (None, "reversed", |it, a, _| { arity(it, "reversed", a, 1)?; let mut v = it.collect(&a[0])?; v.reverse(); Ok(it.new_native(NativeKind::Iter(RefCell::new(IterState::Vec(v, 0))))) }),
    ROUND = (None, "round", b_round),
    CALLABLE = (None, "callable", |it, a, _| { arity(it, "callable", a, 1)?; Ok(Value::Bool(match &a[0] { Value::Function(_) | Value::Method(_) | Value::Builtin(_) | Value::Class(_) | Value::WeakRef(_) => true, Value::Instance(_) => it.lookup_special(&a[0], "__call__").is_some(), Value::Native(n) => matches!(n.kind, NativeKind::BoundBuiltin { .. } | NativeKind::Finalize(_) | NativeKind::WeakMethod { .. } | NativeKind::UnboundBuiltin { .. }), _ => false })) }),
    VARS = (None, "vars", |it, a, _| { arity(it, "vars", a, 1)?; it.getattr(&a[0], &Name::of("__dict__")) }),
    DIR = (None, "dir", b_dir),
    MAP = (None, "map", b_map),
    FILTER = (None, "filter", b_filter),
    DIVMOD = (None, "divmod", |it, a, _| { arity(it, "divmod", a, 2)?; let q = it.binop(BinOp::FloorDiv, &a[0], &a[1])?; let r = it.binop(BinOp::Mod, &a[0], &a[1])?; Ok(it.new_tuple(vec![q, r])) }),
    POW = (None, "pow", |it, a, _| { if a.len() == 3 { if let (Value::Int(b), Value::Int(e), Value::Int(m)) = (&a[0], &a[1], &a[2]) { let mut r: i128 = 1; let mut b = (*b as i128).rem_euclid(*m as i128); let mut e = *e; while e > 0 { if e & 1 == 1 { r = r * b % *m as i128; } b = b * b % *m as i128; e >>= 1; } return Ok(Value::Int(r as i64)); } } arity(it, "pow", a, 2)?; it.binop(BinOp::Pow, &a[0], &a[1]) }),
    CHR = (None, "chr", |it, a, _| { arity(it, "chr", a, 1)?; match &a[0] { Value::Int(i) => char::from_u32(*i as u32).map(|c| Value::str(&c.to_string())).ok_or_else(|| it.exc("ValueError", "chr() arg not in range(0x110000)")), _ => Err(it.type_error("an integer is required")) } }),
    ORD = (None, "ord", |it, a, _| { arity(it, "ord", a, 1)?; match &a[0] { Value::Str(s) if s.chars().count() == 1 => Ok(Value::Int(s.chars().next().unwrap_or('\0') as i64)), _ => Err(it.type_error("ord() expected a character")) } }),
    SUPER = (None, "super", |it, a, _| { if a.len() != 2 { return Err(it.exc("RuntimeError", "super(): no arguments")); } match &a[0] { Value::Class(c) => Ok(it.new_native(NativeKind::Super(c.clone(), a[1].clone()))), _ => Err(it.type_error("super() argument 1 must be a type")) } }),
    STATICMETHOD = (None, "staticmethod", |it, a, _| { arity(it, "staticmethod", a, 1)?; Ok(it.new_native(NativeKind::StaticMethod(a[0].clone()))) }),
    CLASSMETHOD = (None, "classmethod", |it, a, _| { arity(it, "classmethod", a, 1)?; Ok(it.new_native(NativeKind::ClassMethod(a[0].clone()))) }),
    PROPERTY = (None, "property", |it, a, _| { let g = a.first().cloned().unwrap_or(Value::None); let s = a.get(1).cloned().unwrap_or(Value::None); Ok(it.new_native(NativeKind::Property(g, s))) }),
    FORMAT = (None, "format", |it, a, _| { let spec = match a.get(1) { Some(Value::Str(s)) => s.to_string(), _ => String::new() }; Ok(Value::str(&it.format(&a[0], &spec)?)) }),
    GLOBALS = (None, "globals", |it, _, _| Ok(it.modules.borrow().get("__main__").and_then(|m| if let Value::Module(m) = m { Some(Value::Dict(m.dict.clone())) } else { None }).unwrap_or(Value::None))),
    EXIT = (None, "exit", |it, _, _| Err(it.exc("SystemExit", ""))),
    // gc
    GC_COLLECT = (Some("gc"), "collect", crate::modules::gc_collect),
    GC_ENABLE = (Some("gc"), "enable", |it, _, _| { it.heap.enable(); Ok(Value::None) }),
    GC_DISABLE = (Some("gc"), "disable", |it, _, _| { it.heap.disable(); Ok(Value::None) }),
    GC_ISENABLED = (Some("gc"), "isenabled", |it, _, _| Ok(Value::Bool(it.heap.is_enabled()))),
    GC_GET_COUNT = (Some("gc"), "get_count", |it, _, _| { let c = it.heap.get_count(); Ok(it.new_tuple(c.iter().map(|&x| Value::Int(x as i64)).collect())) }),
    GC_GET_THRESHOLD = (Some("gc"), "get_threshold", |it, _, _| { let c = it.heap.get_threshold(); Ok(it.new_tuple(c.iter().map(|&x| Value::Int(x as i64)).collect())) }),
    GC_SET_THRESHOLD = (Some("gc"), "set_threshold", crate::modules::gc_set_threshold),
    GC_GET_STATS = (Some("gc"), "get_stats", crate::modules::gc_get_stats),
    GC_GET_OBJECTS = (Some("gc"), "get_objects", crate::modules::gc_get_objects),
    GC_GET_REFERRERS = (Some("gc"), "get_referrers", crate::modules::gc_get_referrers),
    GC_GET_REFERENTS = (Some("gc"), "get_referents", crate::modules::gc_get_referents),
    GC_IS_TRACKED = (Some("gc"), "is_tracked", crate::modules::gc_is_tracked),
    GC_IS_FINALIZED = (Some("gc"), "is_finalized", crate::modules::gc_is_finalized),
    GC_FREEZE = (Some("gc"), "freeze", |it, _, _| { it.heap.freeze(); Ok(Value::None) }),
    GC_UNFREEZE = (Some("gc"), "unfreeze", |it, _, _| { it.heap.unfreeze(); Ok(Value::None) }),
    GC_GET_FREEZE_COUNT = (Some("gc"), "get_freeze_count", |it, _, _| Ok(Value::Int(it.heap.get_freeze_count() as i64))),
    GC_SET_DEBUG = (Some("gc"), "set_debug", crate::modules::gc_set_debug),
    GC_GET_DEBUG = (Some("gc"), "get_debug", |it, _, _| Ok(Value::Int(it.heap.get_debug().bits() as i64))),
    // weakref
    WR_PROXY = (Some("weakref"), "proxy", crate::modules::wr_proxy),
    WR_GETWEAKREFCOUNT = (Some("weakref"), "getweakrefcount", crate::modules::wr_getweakrefcount),
    WR_GETWEAKREFS = (Some("weakref"), "getweakrefs", crate::modules::wr_getweakrefs),
    WR_WVD = (Some("weakref"), "WeakValueDictionary", crate::modules::wr_wvd),
    WR_WKD = (Some("weakref"), "WeakKeyDictionary", crate::modules::wr_wkd),
    WR_WEAKSET = (Some("weakref"), "WeakSet", crate::modules::wr_weakset),
    WR_FINALIZE = (Some("weakref:"), "finalize", crate::modules::wr_finalize),
    WR_WEAKMETHOD = (Some("weakref:"), "WeakMethod", crate::modules::wr_weakmethod),
    // sys
    SYS_GETREFCOUNT = (Some("sys"), "getrefcount", crate::modules::sys_getrefcount),
    SYS_EXIT = (Some("sys"), "exit", |it, _, _| Err(it.exc("SystemExit", ""))),
    SYS_INTERN = (Some("sys"), "intern", |_, a, _| Ok(a[0].clone())),
    SYS_GETRECURSIONLIMIT = (Some("sys"), "getrecursionlimit", |_, _, _| Ok(Value::Int(1000))),
}

/// Releases values last to first (CPython's list deallocation and clearing order).
pub fn drop_rev(mut v: Vec<Value>) {
    while let Some(x) = v.pop() {
        drop(x);
    }
}

/// The name of a built-in.
pub fn builtin_name(b: BuiltinId) -> &'static str {
    BUILTINS[b.0 as usize].name
}

/// Calls a built-in.
pub fn call_builtin(
    it: &Interp,
    b: BuiltinId,
    args: &[Value],
    kw: &[(Rc<str>, Value)],
) -> PyResult {
    (BUILTINS[b.0 as usize].f)(it, args, kw)
}

fn arity(it: &Interp, name: &str, a: &[Value], n: usize) -> PyResult<()> {
    if a.len() != n {
        return Err(it.type_error(format!(
            "{name}() takes exactly {n} argument{} ({} given)",
            if n == 1 { "" } else { "s" },
            a.len()
        )));
    }
    Ok(())
}

fn name_arg(it: &Interp, v: &Value) -> PyResult<Name> {
    match v {
        Value::Str(s) => Ok(Name {
            s: s.clone(),
            h: str_hash(s),
        }),
        _ => Err(it.type_error("attribute name must be string")),
    }
}

fn kwarg<'a>(kw: &'a [(Rc<str>, Value)], name: &str) -> Option<&'a Value> {
    kw.iter().find(|(k, _)| &**k == name).map(|(_, v)| v)
}

fn b_print(it: &Interp, a: &[Value], kw: &[(Rc<str>, Value)]) -> PyResult {
    let sep = match kwarg(kw, "sep") {
        Some(Value::Str(s)) => s.to_string(),
        _ => " ".into(),
    };
    let end = match kwarg(kw, "end") {
        Some(Value::Str(s)) => s.to_string(),
        _ => "\n".into(),
    };
    let mut s = String::new();
    for (i, v) in a.iter().enumerate() {
        if i > 0 {
            s.push_str(&sep);
        }
        s.push_str(&it.to_str(v)?);
    }
    s.push_str(&end);
    match kwarg(kw, "file") {
        Some(Value::Native(n)) if matches!(n.kind, NativeKind::Stream(2)) => it.write_err(&s),
        Some(Value::None) | None => it.write_out(&s),
        Some(Value::Native(n)) if matches!(n.kind, NativeKind::Stream(1)) => it.write_out(&s),
        Some(f) => {
            it.call_method(f, "write", &[Value::str(&s)])?;
        }
    }
    if matches!(kwarg(kw, "flush"), Some(Value::Bool(true))) {
        it.flush();
    }
    Ok(Value::None)
}

fn sort_values(
    it: &Interp,
    items: &mut Vec<Value>,
    key: Option<&Value>,
    reverse: bool,
) -> PyResult<()> {
    let keys: Vec<Value> = match key {
        Some(k) if !matches!(k, Value::None) => {
            let mut ks = Vec::with_capacity(items.len());
            for v in items.iter() {
                ks.push(it.call(k, std::slice::from_ref(v), &[])?);
            }
            ks
        }
        _ => items.clone(),
    };
    let mut idx: Vec<usize> = (0..items.len()).collect();
    let mut err = None;
    idx.sort_by(|&a, &b| {
        if err.is_some() {
            return std::cmp::Ordering::Equal;
        }
        let (x, y) = if reverse {
            (&keys[b], &keys[a])
        } else {
            (&keys[a], &keys[b])
        };
        match it.compare(CmpOp::Lt, x, y) {
            Ok(true) => std::cmp::Ordering::Less,
            Ok(false) => match it.compare(CmpOp::Lt, y, x) {
                Ok(true) => std::cmp::Ordering::Greater,
                Ok(false) => std::cmp::Ordering::Equal,
                Err(e) => {
                    err = Some(e);
                    std::cmp::Ordering::Equal
                }
            },
            Err(e) => {
                err = Some(e);
                std::cmp::Ordering::Equal
            }
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    let mut old: Vec<Option<Value>> = std::mem::take(items).into_iter().map(Some).collect();
    *items = idx
        .into_iter()
        .map(|i| old[i].take().unwrap_or(Value::None))
        .collect();
    Ok(())
}

fn b_sorted(it: &Interp, a: &[Value], kw: &[(Rc<str>, Value)]) -> PyResult {
    arity(it, "sorted", a, 1)?;
    let mut items = it.collect(&a[0])?;
    let rev = match kwarg(kw, "reverse") {
        Some(v) => it.truthy(v)?,
        None => false,
    };
    sort_values(it, &mut items, kwarg(kw, "key"), rev)?;
    Ok(it.new_list(items))
}

fn class_tuple_check(
    it: &Interp,
    v: &Value,
    t: &Value,
    f: &dyn Fn(&Gc<Class>) -> bool,
) -> PyResult<bool> {
    match t {
        Value::Class(c) => Ok(f(c)),
        Value::Tuple(ts) => {
            for x in ts.items.iter() {
                if class_tuple_check(it, v, x, f)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Value::Builtin(b) if *b == crate::builtins::WR_PROXY => {
            Ok(matches!(v, Value::Native(n) if matches!(n.kind, NativeKind::Proxy(_))))
        }
        _ => Err(it.type_error("isinstance() arg 2 must be a type, a tuple of types, or a union")),
    }
}

fn b_isinstance(it: &Interp, a: &[Value], _: &[(Rc<str>, Value)]) -> PyResult {
    arity(it, "isinstance", a, 2)?;
    let v = &a[0];
    Ok(Value::Bool(class_tuple_check(it, v, &a[1], &|c| {
        it.isinstance(v, c)
    })?))
}

fn b_issubclass(it: &Interp, a: &[Value], _: &[(Rc<str>, Value)]) -> PyResult {
    arity(it, "issubclass", a, 2)?;
    let Value::Class(c) = &a[0] else {
        return Err(it.type_error("issubclass() arg 1 must be a class"));
    };
    Ok(Value::Bool(class_tuple_check(it, &a[0], &a[1], &|b| {
        b.kind == Kind::Object || is_subclass(c, b)
    })?))
}

fn b_getattr(it: &Interp, a: &[Value], _: &[(Rc<str>, Value)]) -> PyResult {
    if a.len() < 2 || a.len() > 3 {
        return Err(it.type_error("getattr expected 2 or 3 arguments"));
    }
    let n = name_arg(it, &a[1])?;
    match it.getattr(&a[0], &n) {
        Ok(v) => Ok(v),
        Err(e)
            if a.len() == 3 && is_subclass(&e.0.class, &it.types.exceptions["AttributeError"]) =>
        {
            Ok(a[2].clone())
        }
        Err(e) => Err(e),
    }
}

fn b_enumerate(it: &Interp, a: &[Value], kw: &[(Rc<str>, Value)]) -> PyResult {
    let start = match a.get(1).or(kwarg(kw, "start")) {
        Some(Value::Int(i)) => *i,
        _ => 0,
    };
    let items = it.collect(&a[0])?;
    let out: Vec<Value> = items
        .into_iter()
        .enumerate()
        .map(|(i, v)| it.new_tuple(vec![Value::Int(start + i as i64), v]))
        .collect();
    Ok(it.new_native(NativeKind::Iter(RefCell::new(IterState::Vec(out, 0)))))
}

fn b_zip(it: &Interp, a: &[Value], _: &[(Rc<str>, Value)]) -> PyResult {
    let mut cols = Vec::new();
    for v in a {
        cols.push(it.collect(v)?);
    }
    let n = cols.iter().map(|c| c.len()).min().unwrap_or(0);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(it.new_tuple(cols.iter().map(|c| c[i].clone()).collect()));
    }
    Ok(it.new_native(NativeKind::Iter(RefCell::new(IterState::Vec(out, 0)))))
}

fn b_map(it: &Interp, a: &[Value], _: &[(Rc<str>, Value)]) -> PyResult {
    if a.len() < 2 {
        return Err(it.type_error("map() must have at least two arguments."));
    }
    let mut cols = Vec::new();
    for v in &a[1..] {
        cols.push(it.collect(v)?);
    }
    let n = cols.iter().map(|c| c.len()).min().unwrap_or(0);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let args: Vec<Value> = cols.iter().map(|c| c[i].clone()).collect();
        out.push(it.call(&a[0], &args, &[])?);
    }
    Ok(it.new_native(NativeKind::Iter(RefCell::new(IterState::Vec(out, 0)))))
}

fn b_filter(it: &Interp, a: &[Value], _: &[(Rc<str>, Value)]) -> PyResult {
    arity(it, "filter", a, 2)?;
    let mut out = Vec::new();
    for v in it.collect(&a[1])? {
        let keep = if matches!(a[0], Value::None) {
            it.truthy(&v)?
        } else {
            let r = it.call(&a[0], std::slice::from_ref(&v), &[])?;
            it.truthy(&r)?
        };
        if keep {
            out.push(v);
        }
    }
    Ok(it.new_native(NativeKind::Iter(RefCell::new(IterState::Vec(out, 0)))))
}

fn b_minmax(it: &Interp, a: &[Value], kw: &[(Rc<str>, Value)], min: bool) -> PyResult {
    let items = if a.len() == 1 {
        it.collect(&a[0])?
    } else {
        a.to_vec()
    };
    let key = kwarg(kw, "key").filter(|k| !matches!(k, Value::None));
    let mut best: Option<(Value, Value)> = None;
    for v in items {
        let k = match key {
            Some(f) => it.call(f, std::slice::from_ref(&v), &[])?,
            None => v.clone(),
        };
        let better = match &best {
            None => true,
            Some((bk, _)) => {
                if min {
                    it.compare(CmpOp::Lt, &k, bk)?
                } else {
                    it.compare(CmpOp::Gt, &k, bk)?
                }
            }
        };
        if better {
            best = Some((k, v));
        }
    }
    match best {
        Some((_, v)) => Ok(v),
        None => match kwarg(kw, "default") {
            Some(d) => Ok(d.clone()),
            None => Err(it.exc(
                "ValueError",
                format!(
                    "{}() arg is an empty sequence",
                    if min { "min" } else { "max" }
                ),
            )),
        },
    }
}

fn b_sum(it: &Interp, a: &[Value], kw: &[(Rc<str>, Value)]) -> PyResult {
    let mut acc = a
        .get(1)
        .or(kwarg(kw, "start"))
        .cloned()
        .unwrap_or(Value::Int(0));
    let mut st = it.iter(&a[0])?;
    while let Some(v) = it.next(&mut st)? {
        acc = it.binop(BinOp::Add, &acc, &v)?;
    }
    Ok(acc)
}

fn b_iter(it: &Interp, v: &Value) -> PyResult {
    if let Value::Native(n) = v {
        if let NativeKind::Iter(_) = n.kind {
            return Ok(v.clone());
        }
    }
    if let Value::Instance(_) = v {
        if let Some(m) = it.lookup_special(v, "__iter__") {
            return it.call_with_self(&m, v, &[]);
        }
    }
    let st = it.iter(v)?;
    Ok(it.new_native(NativeKind::Iter(RefCell::new(st))))
}

fn b_next(it: &Interp, a: &[Value], _: &[(Rc<str>, Value)]) -> PyResult {
    let r = match &a[0] {
        Value::Native(n) => match &n.kind {
            NativeKind::Iter(st) => {
                let mut inner = std::mem::replace(&mut *st.borrow_mut(), IterState::Done);
                let r = it.next(&mut inner);
                *st.borrow_mut() = inner;
                r?
            }
            _ => return Err(it.type_error("object is not an iterator")),
        },
        Value::Instance(_) => match it.call_method(&a[0], "__next__", &[]) {
            Ok(v) => Some(v),
            Err(e)
                if a.len() > 1
                    && is_subclass(&e.0.class, &it.types.exceptions["StopIteration"]) =>
            {
                None
            }
            Err(e) => return Err(e),
        },
        _ => {
            return Err(it.type_error(format!(
                "'{}' object is not an iterator",
                it.type_name(&a[0])
            )))
        }
    };
    match r {
        Some(v) => Ok(v),
        None => match a.get(1) {
            Some(d) => Ok(d.clone()),
            None => Err(it.exc("StopIteration", "")),
        },
    }
}

fn b_round(it: &Interp, a: &[Value], _: &[(Rc<str>, Value)]) -> PyResult {
    match (&a[0], a.get(1)) {
        (Value::Float(f), None | Some(Value::None)) => {
            let r = f.round();
            // Banker's rounding, as Python.
            let r = if (f - f.trunc()).abs() == 0.5 {
                2.0 * (f / 2.0).round()
            } else {
                r
            };
            Ok(Value::Int(r as i64))
        }
        (Value::Float(f), Some(Value::Int(n))) => {
            let s = format!("{:.*}", *n as usize, f);
            Ok(Value::Float(s.parse().unwrap_or(*f)))
        }
        (Value::Int(i), _) => Ok(Value::Int(*i)),
        _ => Err(it.type_error("round() argument must be a number")),
    }
}

fn b_dir(it: &Interp, a: &[Value], _: &[(Rc<str>, Value)]) -> PyResult {
    let mut names: Vec<Value> = Vec::new();
    match a.first() {
        Some(Value::Instance(i)) => {
            names.extend(i.with_table(|t| t.keys()));
            let mut c = Some(i.class.clone());
            while let Some(k) = c {
                names.extend(k.dict.t.borrow().keys());
                c = k.base.clone();
            }
        }
        Some(Value::Class(c)) => names.extend(c.dict.t.borrow().keys()),
        Some(Value::Module(m)) => names.extend(m.dict.t.borrow().keys()),
        _ => {}
    }
    let mut strs: Vec<String> = names
        .into_iter()
        .filter_map(|v| {
            if let Value::Str(s) = v {
                Some(s.to_string())
            } else {
                None
            }
        })
        .collect();
    strs.sort();
    strs.dedup();
    Ok(it.new_list(strs.iter().map(|s| Value::str(s)).collect()))
}

// ---------------------------------------------------------------- constructors of built-in types

/// Calls a built-in type (`int(x)`, `list(it)` …).
pub fn construct(it: &Interp, c: &Gc<Class>, a: &[Value], kw: &[(Rc<str>, Value)]) -> PyResult {
    match c.kind {
        Kind::Int => match a.first() {
            None => Ok(Value::Int(0)),
            Some(Value::Int(i)) => Ok(Value::Int(*i)),
            Some(Value::Bool(b)) => Ok(Value::Int(*b as i64)),
            Some(Value::Float(f)) => {
                if f.is_finite() && f.abs() < 9.2e18 {
                    Ok(Value::Int(f.trunc() as i64))
                } else {
                    Err(it.overflow())
                }
            }
            Some(Value::Str(s)) => {
                let base = match a.get(1) {
                    Some(Value::Int(b)) => *b as u32,
                    _ => 10,
                };
                let t = s.trim().replace('_', "");
                i64::from_str_radix(&t, base).map(Value::Int).map_err(|_| {
                    it.exc(
                        "ValueError",
                        format!(
                            "invalid literal for int() with base {base}: {}",
                            repr_str(s)
                        ),
                    )
                })
            }
            Some(v @ Value::Instance(_)) => it.call_method(v, "__int__", &[]),
            Some(v) => Err(it.type_error(format!(
                "int() argument must be a string, a bytes-like object or a real number, not '{}'",
                it.type_name(v)
            ))),
        },
        Kind::Float => match a.first() {
            None => Ok(Value::Float(0.0)),
            Some(Value::Int(i)) => Ok(Value::Float(*i as f64)),
            Some(Value::Bool(b)) => Ok(Value::Float(*b as i64 as f64)),
            Some(Value::Float(f)) => Ok(Value::Float(*f)),
            Some(Value::Str(s)) => {
                let t = s.trim().to_lowercase();
                let v = match t.as_str() {
                    "inf" | "+inf" | "infinity" => Some(f64::INFINITY),
                    "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
                    "nan" => Some(f64::NAN),
                    _ => t.parse::<f64>().ok(),
                };
                v.map(Value::Float).ok_or_else(|| {
                    it.exc(
                        "ValueError",
                        format!("could not convert string to float: {}", repr_str(s)),
                    )
                })
            }
            Some(v) => it.call_method(v, "__float__", &[]),
        },
        Kind::Bool => match a.first() {
            None => Ok(Value::Bool(false)),
            Some(v) => Ok(Value::Bool(it.truthy(v)?)),
        },
        Kind::Str => match a.first() {
            None => Ok(Value::str("")),
            Some(v) => Ok(Value::str(&it.to_str(v)?)),
        },
        Kind::List => match a.first() {
            None => Ok(it.new_list(vec![])),
            Some(v) => {
                let items = it.collect(v)?;
                Ok(it.new_list(items))
            }
        },
        Kind::Tuple => match a.first() {
            None => Ok(it.new_tuple(vec![])),
            Some(v @ Value::Tuple(_)) => Ok(v.clone()),
            Some(v) => {
                let items = it.collect(v)?;
                Ok(it.new_tuple(items))
            }
        },
        Kind::Set | Kind::FrozenSet => {
            let s = it.heap.alloc(Set::default());
            if let Some(v) = a.first() {
                for x in it.collect(v)? {
                    it.set_add(&s, x)?;
                }
            }
            Ok(Value::Set(s))
        }
        Kind::Dict => {
            let d = it.heap.alloc(Dict::default());
            if let Some(v) = a.first() {
                match v {
                    Value::Dict(_) => {
                        for (k, x) in it.items_of(v)? {
                            it.dict_set(&d, k, x)?;
                        }
                    }
                    _ => {
                        for pair in it.collect(v)? {
                            let kv = it.collect(&pair)?;
                            if kv.len() != 2 {
                                return Err(it.exc(
                                    "ValueError",
                                    "dictionary update sequence element has wrong length",
                                ));
                            }
                            let mut kv = kv.into_iter();
                            let (k, x) = (
                                kv.next().unwrap_or(Value::None),
                                kv.next().unwrap_or(Value::None),
                            );
                            it.dict_set(&d, k, x)?;
                        }
                    }
                }
            }
            for (k, v) in kw {
                it.dict_set(&d, Value::Str(k.clone()), v.clone())?;
            }
            Ok(Value::Dict(d))
        }
        Kind::Type => {
            if a.len() == 1 {
                return Ok(Value::Class(it.class_of(&a[0])));
            }
            Err(it.exc(
                "NotImplementedError",
                "type() with three arguments is outside minipy's subset",
            ))
        }
        Kind::Range => {
            let ints: Vec<i64> = a
                .iter()
                .map(|v| match v {
                    Value::Int(i) => Ok(*i),
                    Value::Bool(b) => Ok(*b as i64),
                    _ => Err(it.type_error(format!(
                        "'{}' object cannot be interpreted as an integer",
                        it.type_name(v)
                    ))),
                })
                .collect::<PyResult<_>>()?;
            let (start, stop, step) = match ints.len() {
                1 => (0, ints[0], 1),
                2 => (ints[0], ints[1], 1),
                3 => (ints[0], ints[1], ints[2]),
                _ => return Err(it.type_error("range expected at most 3 arguments")),
            };
            if step == 0 {
                return Err(it.exc("ValueError", "range() arg 3 must not be zero"));
            }
            Ok(it.new_native(NativeKind::Range { start, stop, step }))
        }
        Kind::WeakRef => crate::modules::wr_ref(it, a, kw),
        Kind::Finalize => crate::modules::wr_finalize(it, a, kw),
        Kind::WeakMethod => crate::modules::wr_weakmethod(it, a, kw),
        Kind::NoneType => Ok(Value::None),
        _ => Err(it.type_error(format!("cannot create '{}' instances", c.name))),
    }
}

// ---------------------------------------------------------------- len, items

/// `range` length.
pub fn range_len(start: i64, stop: i64, step: i64) -> i64 {
    if step > 0 && start < stop {
        (stop - start + step - 1) / step
    } else if step < 0 && start > stop {
        (start - stop - step - 1) / (-step)
    } else {
        0
    }
}

/// `len(v)`
pub fn len(it: &Interp, v: &Value) -> PyResult<usize> {
    Ok(match v {
        Value::Str(s) => s.chars().count(),
        Value::List(l) => l.items.borrow().len(),
        Value::Tuple(t) => t.items.len(),
        Value::Dict(d) => d.t.borrow().len(),
        Value::Set(s) => s.t.borrow().len(),
        Value::Instance(_) => match it.lookup_special(v, "__len__") {
            Some(m) => match it.call_with_self(&m, v, &[])? {
                Value::Int(i) if i >= 0 => i as usize,
                Value::Int(_) => return Err(it.exc("ValueError", "__len__() should return >= 0")),
                _ => return Err(it.type_error("an integer is required")),
            },
            None => {
                return Err(
                    it.type_error(format!("object of type '{}' has no len()", it.type_name(v)))
                )
            }
        },
        Value::Native(n) => return crate::modules::native_len(it, v, n),
        _ => {
            return Err(it.type_error(format!("object of type '{}' has no len()", it.type_name(v))))
        }
    })
}

fn index(it: &Interp, i: &Value, len: usize) -> PyResult<usize> {
    let i = match i {
        Value::Int(i) => *i,
        Value::Bool(b) => *b as i64,
        _ => return Err(it.type_error("indices must be integers or slices")),
    };
    let j = if i < 0 { i + len as i64 } else { i };
    if j < 0 || j >= len as i64 {
        return Err(it.exc("IndexError", "index out of range"));
    }
    Ok(j as usize)
}

fn slice_indices(
    it: &Interp,
    a: &Value,
    b: &Value,
    c: &Value,
    len: usize,
) -> PyResult<(i64, i64, i64)> {
    let step = match c {
        Value::None => 1,
        Value::Int(s) => *s,
        _ => return Err(it.type_error("slice indices must be integers or None")),
    };
    if step == 0 {
        return Err(it.exc("ValueError", "slice step cannot be zero"));
    }
    let len = len as i64;
    let norm = |v: &Value, def: i64| -> PyResult<i64> {
        match v {
            Value::None => Ok(def),
            Value::Int(i) => {
                let i = if *i < 0 { *i + len } else { *i };
                Ok(if step > 0 {
                    i.clamp(0, len)
                } else {
                    i.clamp(-1, len - 1)
                })
            }
            _ => Err(it.type_error("slice indices must be integers or None")),
        }
    };
    let (start, stop) = if step > 0 {
        (norm(a, 0)?, norm(b, len)?)
    } else {
        (norm(a, len - 1)?, norm(b, -1)?)
    };
    Ok((start, stop, step))
}

fn slice_positions(start: i64, stop: i64, step: i64) -> Vec<usize> {
    let mut out = Vec::new();
    let mut i = start;
    while (step > 0 && i < stop) || (step < 0 && i > stop) {
        out.push(i as usize);
        i += step;
    }
    out
}

/// `o[i]`
pub fn getitem(it: &Interp, o: &Value, i: &Value) -> PyResult {
    if let Value::Native(n) = i {
        if let NativeKind::Slice(a, b, c) = &n.kind {
            return match o {
                Value::List(l) => {
                    let items = l.items.borrow().clone();
                    let (s, e, st) = slice_indices(it, a, b, c, items.len())?;
                    Ok(it.new_list(
                        slice_positions(s, e, st)
                            .into_iter()
                            .map(|p| items[p].clone())
                            .collect(),
                    ))
                }
                Value::Tuple(t) => {
                    let (s, e, st) = slice_indices(it, a, b, c, t.items.len())?;
                    Ok(it.new_tuple(
                        slice_positions(s, e, st)
                            .into_iter()
                            .map(|p| t.items[p].clone())
                            .collect(),
                    ))
                }
                Value::Str(s) => {
                    let chars: Vec<char> = s.chars().collect();
                    let (s0, e, st) = slice_indices(it, a, b, c, chars.len())?;
                    let r: String = slice_positions(s0, e, st)
                        .into_iter()
                        .map(|p| chars[p])
                        .collect();
                    Ok(Value::str(&r))
                }
                Value::Instance(_) => match it.lookup_special(o, "__getitem__") {
                    Some(m) => it.call_with_self(&m, o, std::slice::from_ref(i)),
                    None => Err(it.type_error("object is not subscriptable")),
                },
                _ => {
                    Err(it.type_error(format!("'{}' object is not subscriptable", it.type_name(o))))
                }
            };
        }
    }
    match o {
        Value::List(l) => {
            let items = l.items.borrow();
            match index(it, i, items.len()) {
                Ok(j) => Ok(items[j].clone()),
                Err(_) if matches!(i, Value::Int(_)) => {
                    Err(it.exc("IndexError", "list index out of range"))
                }
                Err(e) => Err(e),
            }
        }
        Value::Tuple(t) => match index(it, i, t.items.len()) {
            Ok(j) => Ok(t.items[j].clone()),
            Err(_) if matches!(i, Value::Int(_)) => {
                Err(it.exc("IndexError", "tuple index out of range"))
            }
            Err(e) => Err(e),
        },
        Value::Str(s) => {
            let chars: Vec<char> = s.chars().collect();
            match index(it, i, chars.len()) {
                Ok(j) => Ok(Value::str(&chars[j].to_string())),
                Err(_) if matches!(i, Value::Int(_)) => {
                    Err(it.exc("IndexError", "string index out of range"))
                }
                Err(e) => Err(e),
            }
        }
        Value::Dict(d) => match it.dict_get(d, i)? {
            Some(v) => Ok(v),
            None => {
                let k = it.repr(i)?;
                let cls = it.types.exceptions["KeyError"].clone();
                let _ = k;
                Err(crate::interp::Exc(it.new_exception(cls, vec![i.clone()])))
            }
        },
        Value::Instance(_) => match it.lookup_special(o, "__getitem__") {
            Some(m) => it.call_with_self(&m, o, std::slice::from_ref(i)),
            None => {
                Err(it.type_error(format!("'{}' object is not subscriptable", it.type_name(o))))
            }
        },
        Value::Class(c) if c.kind != Kind::User => Ok(o.clone()),
        Value::Native(n) => crate::modules::native_getitem(it, o, n, i),
        _ => Err(it.type_error(format!("'{}' object is not subscriptable", it.type_name(o)))),
    }
}

/// `o[i] = v`
pub fn setitem(it: &Interp, o: &Value, i: Value, v: Value) -> PyResult<()> {
    match o {
        Value::List(l) => {
            if let Value::Native(n) = &i {
                if let NativeKind::Slice(a, b, c) = &n.kind {
                    let new = it.collect(&v)?;
                    let len = l.items.borrow().len();
                    let (s, e, st) = slice_indices(it, a, b, c, len)?;
                    if st != 1 {
                        return Err(it.exc("NotImplementedError", "extended slice assignment"));
                    }
                    let e = e.max(s);
                    let old: Vec<Value> = l
                        .items
                        .borrow_mut()
                        .splice(s as usize..e as usize, new)
                        .collect();
                    drop_rev(old);
                    return Ok(());
                }
            }
            let len = l.items.borrow().len();
            let j = match index(it, &i, len) {
                Ok(j) => j,
                Err(_) => return Err(it.exc("IndexError", "list assignment index out of range")),
            };
            let old = std::mem::replace(&mut l.items.borrow_mut()[j], v);
            drop(old);
            Ok(())
        }
        Value::Dict(d) => it.dict_set(d, i, v),
        Value::Instance(_) => match it.lookup_special(o, "__setitem__") {
            Some(m) => it.call_with_self(&m, o, &[i, v]).map(|_| ()),
            None => Err(it.type_error(format!(
                "'{}' object does not support item assignment",
                it.type_name(o)
            ))),
        },
        Value::Native(n) => crate::modules::native_setitem(it, o, n, i, v),
        _ => Err(it.type_error(format!(
            "'{}' object does not support item assignment",
            it.type_name(o)
        ))),
    }
}

/// `del o[i]`
pub fn delitem(it: &Interp, o: &Value, i: &Value) -> PyResult<()> {
    match o {
        Value::List(l) => {
            if let Value::Native(n) = i {
                if let NativeKind::Slice(a, b, c) = &n.kind {
                    let len = l.items.borrow().len();
                    let (s, e, st) = slice_indices(it, a, b, c, len)?;
                    let mut pos = slice_positions(s, e, st);
                    pos.sort_unstable();
                    let mut removed = Vec::new();
                    {
                        let mut items = l.items.borrow_mut();
                        for p in pos.into_iter().rev() {
                            removed.push(items.remove(p));
                        }
                    }
                    drop(removed);
                    return Ok(());
                }
            }
            let len = l.items.borrow().len();
            let j = match index(it, i, len) {
                Ok(j) => j,
                Err(_) => return Err(it.exc("IndexError", "list assignment index out of range")),
            };
            let old = l.items.borrow_mut().remove(j);
            drop(old);
            Ok(())
        }
        Value::Dict(d) => match it.dict_del(d, i)? {
            Some(v) => {
                drop(v);
                Ok(())
            }
            None => {
                let cls = it.types.exceptions["KeyError"].clone();
                Err(crate::interp::Exc(it.new_exception(cls, vec![i.clone()])))
            }
        },
        Value::Instance(_) => match it.lookup_special(o, "__delitem__") {
            Some(m) => it
                .call_with_self(&m, o, std::slice::from_ref(i))
                .map(|_| ()),
            None => Err(it.type_error("object does not support item deletion")),
        },
        Value::Native(n) => crate::modules::native_delitem(it, o, n, i),
        _ => Err(it.type_error(format!(
            "'{}' object does not support item deletion",
            it.type_name(o)
        ))),
    }
}

// ---------------------------------------------------------------- arithmetic

fn py_mod_i(a: i64, b: i64) -> i64 {
    let r = a.wrapping_rem(b);
    if r != 0 && ((r < 0) != (b < 0)) {
        r + b
    } else {
        r
    }
}

fn py_floordiv_i(a: i64, b: i64) -> i64 {
    let q = a.wrapping_div(b);
    if (a % b != 0) && ((a < 0) != (b < 0)) {
        q - 1
    } else {
        q
    }
}

fn py_mod_f(a: f64, b: f64) -> f64 {
    let r = a % b;
    if r != 0.0 && ((r < 0.0) != (b < 0.0)) {
        r + b
    } else {
        r
    }
}

/// Operators on built-in values; `None` if the operands are not built-ins that support it.
pub fn arith(it: &Interp, op: BinOp, a: &Value, b: &Value) -> PyResult<Option<Value>> {
    let ov = || it.overflow();
    let as_int = |v: &Value| match v {
        Value::Int(i) => Some(*i),
        Value::Bool(b) => Some(*b as i64),
        _ => None,
    };
    if let (Some(x), Some(y)) = (as_int(a), as_int(b)) {
        return Ok(Some(match op {
            BinOp::Add => Value::Int(x.checked_add(y).ok_or_else(ov)?),
            BinOp::Sub => Value::Int(x.checked_sub(y).ok_or_else(ov)?),
            BinOp::Mul => Value::Int(x.checked_mul(y).ok_or_else(ov)?),
            BinOp::Div => {
                if y == 0 {
                    return Err(it.exc("ZeroDivisionError", "division by zero"));
                }
                Value::Float(x as f64 / y as f64)
            }
            BinOp::FloorDiv => {
                if y == 0 {
                    return Err(it.exc("ZeroDivisionError", "integer division or modulo by zero"));
                }
                Value::Int(py_floordiv_i(x, y))
            }
            BinOp::Mod => {
                if y == 0 {
                    return Err(it.exc("ZeroDivisionError", "integer division or modulo by zero"));
                }
                Value::Int(py_mod_i(x, y))
            }
            BinOp::Pow => {
                if y < 0 {
                    Value::Float((x as f64).powf(y as f64))
                } else {
                    let e = u32::try_from(y).map_err(|_| ov())?;
                    Value::Int(x.checked_pow(e).ok_or_else(ov)?)
                }
            }
            BinOp::LShift => {
                if y < 0 {
                    return Err(it.exc("ValueError", "negative shift count"));
                }
                if y >= 64 || (x << y) >> y != x {
                    if x == 0 {
                        Value::Int(0)
                    } else {
                        return Err(ov());
                    }
                } else {
                    Value::Int(x << y)
                }
            }
            BinOp::RShift => {
                if y < 0 {
                    return Err(it.exc("ValueError", "negative shift count"));
                }
                Value::Int(if y >= 64 {
                    if x < 0 {
                        -1
                    } else {
                        0
                    }
                } else {
                    x >> y
                })
            }
            BinOp::BitOr => {
                if let (Value::Bool(p), Value::Bool(q)) = (a, b) {
                    Value::Bool(*p | *q)
                } else {
                    Value::Int(x | y)
                }
            }
            BinOp::BitAnd => {
                if let (Value::Bool(p), Value::Bool(q)) = (a, b) {
                    Value::Bool(*p & *q)
                } else {
                    Value::Int(x & y)
                }
            }
            BinOp::BitXor => {
                if let (Value::Bool(p), Value::Bool(q)) = (a, b) {
                    Value::Bool(*p ^ *q)
                } else {
                    Value::Int(x ^ y)
                }
            }
            BinOp::MatMul => return Ok(None),
        }));
    }
    let as_f = |v: &Value| match v {
        Value::Int(i) => Some(*i as f64),
        Value::Bool(b) => Some(*b as i64 as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    };
    if let (Some(x), Some(y)) = (as_f(a), as_f(b)) {
        return Ok(Some(Value::Float(match op {
            BinOp::Add => x + y,
            BinOp::Sub => x - y,
            BinOp::Mul => x * y,
            BinOp::Div => {
                if y == 0.0 {
                    return Err(it.exc("ZeroDivisionError", "float division by zero"));
                }
                x / y
            }
            BinOp::FloorDiv => {
                if y == 0.0 {
                    return Err(it.exc("ZeroDivisionError", "float floor division by zero"));
                }
                (x / y).floor()
            }
            BinOp::Mod => {
                if y == 0.0 {
                    return Err(it.exc("ZeroDivisionError", "float modulo"));
                }
                py_mod_f(x, y)
            }
            BinOp::Pow => x.powf(y),
            _ => return Ok(None),
        })));
    }
    Ok(match (op, a, b) {
        (BinOp::Add, Value::Str(x), Value::Str(y)) => {
            let mut s = String::with_capacity(x.len() + y.len());
            s.push_str(x);
            s.push_str(y);
            Some(Value::str(&s))
        }
        (BinOp::Mul, Value::Str(x), Value::Int(n)) | (BinOp::Mul, Value::Int(n), Value::Str(x)) => {
            Some(Value::str(&x.repeat((*n).max(0) as usize)))
        }
        (BinOp::Mod, Value::Str(x), _) => Some(Value::str(&crate::format::percent(it, x, b)?)),
        (BinOp::Add, Value::List(x), Value::List(y)) => {
            let mut v = x.items.borrow().clone();
            v.extend(y.items.borrow().iter().cloned());
            Some(it.new_list(v))
        }
        (BinOp::Add, Value::Tuple(x), Value::Tuple(y)) => {
            let mut v = x.items.to_vec();
            v.extend(y.items.iter().cloned());
            Some(it.new_tuple(v))
        }
        (BinOp::Mul, Value::List(x), Value::Int(n))
        | (BinOp::Mul, Value::Int(n), Value::List(x)) => {
            let items = x.items.borrow().clone();
            let mut v = Vec::new();
            for _ in 0..(*n).max(0) {
                v.extend(items.iter().cloned());
            }
            Some(it.new_list(v))
        }
        (BinOp::Mul, Value::Tuple(x), Value::Int(n))
        | (BinOp::Mul, Value::Int(n), Value::Tuple(x)) => {
            let mut v = Vec::new();
            for _ in 0..(*n).max(0) {
                v.extend(x.items.iter().cloned());
            }
            Some(it.new_tuple(v))
        }
        (
            BinOp::BitOr | BinOp::BitAnd | BinOp::Sub | BinOp::BitXor,
            Value::Set(x),
            Value::Set(y),
        ) => {
            let out = it.heap.alloc(Set::default());
            let xs = x.t.borrow().keys();
            let ys = y.t.borrow().keys();
            match op {
                BinOp::BitOr => {
                    for k in xs.into_iter().chain(ys) {
                        it.set_add(&out, k)?;
                    }
                }
                BinOp::BitAnd => {
                    for k in xs {
                        if it.set_contains(y, &k)? {
                            it.set_add(&out, k)?;
                        }
                    }
                }
                BinOp::Sub => {
                    for k in xs {
                        if !it.set_contains(y, &k)? {
                            it.set_add(&out, k)?;
                        }
                    }
                }
                _ => {
                    for k in xs {
                        if !it.set_contains(y, &k)? {
                            it.set_add(&out, k)?;
                        }
                    }
                    for k in ys {
                        if !it.set_contains(x, &k)? {
                            it.set_add(&out, k)?;
                        }
                    }
                }
            }
            Some(Value::Set(out))
        }
        (BinOp::BitOr, Value::Dict(x), Value::Dict(y)) => {
            let d = it.heap.alloc(Dict::default());
            for (k, v) in it
                .items_of(&Value::Dict(x.clone()))?
                .into_iter()
                .chain(it.items_of(&Value::Dict(y.clone()))?)
            {
                it.dict_set(&d, k, v)?;
            }
            Some(Value::Dict(d))
        }
        _ => None,
    })
}

// ---------------------------------------------------------------- set order

/// The iteration order of a set, as CPython's open-addressing table would give it for these
/// keys inserted in this order (ints hash to themselves there too, so small-int sets iterate
/// as in CPython).
pub fn set_order(t: &Table) -> Vec<Value> {
    let n = t.len();
    if n == 0 {
        return Vec::new();
    }
    let mut mask: usize = 7;
    let mut slots: Vec<Option<(u64, usize)>> = vec![None; 8];
    let mut fill = 0usize;
    let entries: Vec<&crate::table::Entry> = t.iter().collect();
    fn insert(slots: &mut [Option<(u64, usize)>], mask: usize, h: u64, idx: usize) {
        let mut perturb = h;
        let mut i = (h as usize) & mask;
        loop {
            if slots[i].is_none() {
                slots[i] = Some((h, idx));
                return;
            }
            if i + 9 <= mask {
                for j in 1..=9 {
                    if slots[i + j].is_none() {
                        slots[i + j] = Some((h, idx));
                        return;
                    }
                }
            }
            perturb >>= 5;
            i = (i
                .wrapping_mul(5)
                .wrapping_add(1)
                .wrapping_add(perturb as usize))
                & mask;
        }
    }
    for (idx, e) in entries.iter().enumerate() {
        insert(&mut slots, mask, e.hash, idx);
        fill += 1;
        if fill * 5 >= mask * 3 {
            let used = fill;
            let minused = if used > 50000 { used * 2 } else { used * 4 };
            let mut newsize = 8;
            while newsize <= minused {
                newsize <<= 1;
            }
            let old = std::mem::replace(&mut slots, vec![None; newsize]);
            mask = newsize - 1;
            for (h, i) in old.into_iter().flatten() {
                insert(&mut slots, mask, h, i);
            }
        }
    }
    slots
        .into_iter()
        .flatten()
        .map(|(_, i)| entries[i].key.clone())
        .collect()
}

// ---------------------------------------------------------------- repr / str

/// Python's `repr` of a string.
pub fn repr_str(s: &str) -> String {
    let q = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

thread_local! {
    static REPR_STACK: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

fn guarded(id: usize, f: impl FnOnce() -> PyResult<String>, rec: &str) -> PyResult<String> {
    let seen = REPR_STACK.with(|s| s.borrow().contains(&id));
    if seen {
        return Ok(rec.to_string());
    }
    REPR_STACK.with(|s| s.borrow_mut().push(id));
    let r = f();
    REPR_STACK.with(|s| s.borrow_mut().pop());
    r
}

/// Formats an address as CPython does (`0x7f…`).
pub fn addr(id: usize) -> String {
    format!("0x{id:x}")
}

/// `repr(v)`
pub fn repr(it: &Interp, v: &Value) -> PyResult<String> {
    Ok(match v {
        Value::None => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => crate::format::float_repr(*f),
        Value::Str(s) => repr_str(s),
        Value::List(l) => {
            return guarded(
                v.id(),
                || {
                    let items = l.items.borrow().clone();
                    let mut parts = Vec::with_capacity(items.len());
                    for i in &items {
                        parts.push(repr(it, i)?);
                    }
                    Ok(format!("[{}]", parts.join(", ")))
                },
                "[...]",
            )
        }
        Value::Tuple(t) => {
            return guarded(
                v.id(),
                || {
                    let mut parts = Vec::with_capacity(t.items.len());
                    for i in t.items.iter() {
                        parts.push(repr(it, i)?);
                    }
                    if parts.len() == 1 {
                        Ok(format!("({},)", parts[0]))
                    } else {
                        Ok(format!("({})", parts.join(", ")))
                    }
                },
                "(...)",
            )
        }
        Value::Dict(d) => {
            return guarded(
                v.id(),
                || {
                    let items: Vec<(Value, Value)> =
                        d.t.borrow()
                            .iter()
                            .map(|e| (e.key.clone(), e.value.clone()))
                            .collect();
                    let mut parts = Vec::with_capacity(items.len());
                    for (k, x) in &items {
                        parts.push(format!("{}: {}", repr(it, k)?, repr(it, x)?));
                    }
                    Ok(format!("{{{}}}", parts.join(", ")))
                },
                "{...}",
            )
        }
        Value::Set(s) => {
            let items = set_order(&s.t.borrow());
            if items.is_empty() {
                return Ok("set()".into());
            }
            return guarded(
                v.id(),
                || {
                    let mut parts = Vec::with_capacity(items.len());
                    for i in &items {
                        parts.push(repr(it, i)?);
                    }
                    Ok(format!("{{{}}}", parts.join(", ")))
                },
                "set(...)",
            );
        }
        Value::Instance(inst) => {
            if let Some(m) = it.lookup_special(v, "__repr__") {
                let r = it.call_with_self(&m, v, &[])?;
                return match r {
                    Value::Str(s) => Ok(s.to_string()),
                    _ => Err(it.type_error("__repr__ returned non-string")),
                };
            }
            if inst.class.is_exc {
                let args = inst
                    .exc
                    .borrow()
                    .as_ref()
                    .map(|s| s.args.clone())
                    .unwrap_or_default();
                let mut parts = Vec::new();
                for a in &args {
                    parts.push(repr(it, a)?);
                }
                return Ok(format!("{}({})", inst.class.name, parts.join(", ")));
            }
            format!(
                "<__main__.{} object at {}>",
                inst.class.qualname,
                addr(v.id())
            )
        }
        Value::Class(c) => {
            if c.kind == Kind::User {
                format!("<class '__main__.{}'>", c.qualname)
            } else {
                format!("<class '{}'>", c.name)
            }
        }
        Value::Function(f) => format!("<function {} at {}>", f.code.qualname, addr(v.id())),
        Value::Method(m) => {
            let fname = match &m.func {
                Value::Function(f) => f.code.qualname.to_string(),
                other => repr(it, other)?,
            };
            format!("<bound method {} of {}>", fname, repr(it, &m.recv)?)
        }
        Value::Builtin(b) => {
            if *b == NOT_IMPLEMENTED {
                return Ok("NotImplemented".into());
            }
            format!("<built-in function {}>", builtin_name(*b))
        }
        Value::Module(m) => format!("<module '{}' (built-in)>", m.name),
        Value::Cell(c) => match &*c.value.borrow() {
            Some(x) => format!(
                "<cell at {}: {} object at {}>",
                addr(v.id()),
                it.type_name(x),
                addr(x.id())
            ),
            None => format!("<cell at {}: empty>", addr(v.id())),
        },
        Value::WeakRef(w) => match w.upgrade().and_then(Value::from_any) {
            Some(o) => format!(
                "<weakref at {}; to '{}' at {}>",
                addr(v.id()),
                it.type_name(&o),
                addr(o.id())
            ),
            None => format!("<weakref at {}; dead>", addr(v.id())),
        },
        Value::Native(n) => return crate::modules::native_repr(it, v, n),
    })
}

/// `str(v)`
pub fn to_str(it: &Interp, v: &Value) -> PyResult<String> {
    match v {
        Value::Str(s) => Ok(s.to_string()),
        Value::Native(n) if matches!(n.kind, NativeKind::Proxy(_)) => {
            let NativeKind::Proxy(p) = &n.kind else {
                unreachable!()
            };
            let t = crate::modules::proxy_target(it, p)?;
            to_str(it, &t)
        }
        Value::Instance(inst) => {
            if let Some(m) = it.lookup_special(v, "__str__") {
                let r = it.call_with_self(&m, v, &[])?;
                return match r {
                    Value::Str(s) => Ok(s.to_string()),
                    _ => Err(it.type_error("__str__ returned non-string")),
                };
            }
            if inst.class.is_exc && it.lookup_special(v, "__repr__").is_none() {
                let args = inst
                    .exc
                    .borrow()
                    .as_ref()
                    .map(|s| s.args.clone())
                    .unwrap_or_default();
                if inst.class.name.as_ref() == "KeyError" && args.len() == 1 {
                    return repr(it, &args[0]);
                }
                return match args.len() {
                    0 => Ok(String::new()),
                    1 => to_str(it, &args[0]),
                    _ => repr(it, &it.new_tuple(args)),
                };
            }
            repr(it, v)
        }
        _ => repr(it, v),
    }
}

// ---------------------------------------------------------------- methods of built-in types

/// Whether method calls on this value go to [`call_native_method`].
pub fn has_native_methods(v: &Value) -> bool {
    matches!(
        v,
        Value::Str(_)
            | Value::List(_)
            | Value::Dict(_)
            | Value::Set(_)
            | Value::Tuple(_)
            | Value::Int(_)
            | Value::Float(_)
    ) || matches!(v, Value::Native(n) if !matches!(n.kind, NativeKind::Super(..) | NativeKind::Proxy(_)))
}

const STR_METHODS: &[&str] = &[
    "join",
    "split",
    "rsplit",
    "strip",
    "lstrip",
    "rstrip",
    "startswith",
    "endswith",
    "upper",
    "lower",
    "replace",
    "format",
    "find",
    "rfind",
    "count",
    "index",
    "isdigit",
    "isalpha",
    "isalnum",
    "isspace",
    "isupper",
    "islower",
    "title",
    "capitalize",
    "splitlines",
    "zfill",
    "center",
    "ljust",
    "rjust",
    "partition",
    "rpartition",
    "swapcase",
    "isidentifier",
    "encode",
];
const LIST_METHODS: &[&str] = &[
    "append", "extend", "pop", "insert", "remove", "index", "count", "sort", "reverse", "clear",
    "copy",
];
const DICT_METHODS: &[&str] = &[
    "get",
    "keys",
    "values",
    "items",
    "pop",
    "setdefault",
    "update",
    "clear",
    "copy",
    "popitem",
];
const SET_METHODS: &[&str] = &[
    "add",
    "remove",
    "discard",
    "pop",
    "clear",
    "copy",
    "update",
    "union",
    "intersection",
    "difference",
    "issubset",
    "issuperset",
    "symmetric_difference",
    "isdisjoint",
];

/// Whether a built-in type has a method of this name.
pub fn type_has_method(kind: Kind, name: &str) -> bool {
    match kind {
        Kind::Str => STR_METHODS.contains(&name),
        Kind::List => LIST_METHODS.contains(&name),
        Kind::Dict => DICT_METHODS.contains(&name),
        Kind::Set => SET_METHODS.contains(&name),
        Kind::Tuple => name == "index" || name == "count",
        Kind::Int => name == "bit_length" || name == "to_bytes",
        Kind::Float => name == "is_integer",
        Kind::Native => true,
        _ => false,
    }
}

fn str_arg<'a>(it: &Interp, a: &'a [Value], i: usize, m: &str) -> PyResult<&'a str> {
    match a.get(i) {
        Some(Value::Str(s)) => Ok(s),
        _ => Err(it.type_error(format!("{m}() argument must be str"))),
    }
}

/// Calls a method of a built-in value.
pub fn call_native_method(
    it: &Interp,
    recv: &Value,
    name: &str,
    a: &[Value],
    kw: &[(Rc<str>, Value)],
) -> PyResult {
    match recv {
        Value::Str(s) => str_method(it, s, name, a, kw),
        Value::List(l) => list_method(it, recv, l, name, a, kw),
        Value::Dict(d) => dict_method(it, d, name, a),
        Value::Set(s) => set_method(it, s, name, a),
        Value::Tuple(t) => match name {
            "index" => {
                for (i, x) in t.items.iter().enumerate() {
                    if it.eq(x, &a[0])? {
                        return Ok(Value::Int(i as i64));
                    }
                }
                Err(it.exc("ValueError", "tuple.index(x): x not in tuple"))
            }
            "count" => {
                let mut n = 0;
                for x in t.items.iter() {
                    if it.eq(x, &a[0])? {
                        n += 1;
                    }
                }
                Ok(Value::Int(n))
            }
            _ => Err(it.attr_error(recv, name)),
        },
        Value::Int(i) => match name {
            "bit_length" => Ok(Value::Int(64 - i.unsigned_abs().leading_zeros() as i64)),
            _ => Err(it.attr_error(recv, name)),
        },
        Value::Float(f) => match name {
            "is_integer" => Ok(Value::Bool(f.fract() == 0.0)),
            _ => Err(it.attr_error(recv, name)),
        },
        Value::Instance(inst) if name == "__init__" && inst.class.is_exc => {
            if let Some(st) = inst.exc.borrow_mut().as_mut() {
                st.args = a.to_vec();
            }
            Ok(Value::None)
        }
        Value::Instance(_) if name == "__init__" || name == "__del__" => Ok(Value::None),
        Value::Instance(_) if name == "__str__" || name == "__repr__" => {
            if name == "__str__" {
                Ok(Value::str(&to_str(it, recv)?))
            } else {
                Ok(Value::str(&repr(it, recv)?))
            }
        }
        Value::Native(n) => crate::modules::native_method(it, recv, n, name, a, kw),
        _ => Err(it.attr_error(recv, name)),
    }
}

fn str_method(
    it: &Interp,
    s: &Rc<str>,
    name: &str,
    a: &[Value],
    kw: &[(Rc<str>, Value)],
) -> PyResult {
    let bool_ = Value::Bool;
    Ok(match name {
        "join" => {
            let items = it.collect(&a[0])?;
            let mut out = String::new();
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(s);
                }
                match x {
                    Value::Str(p) => out.push_str(p),
                    other => {
                        return Err(it.type_error(format!(
                            "sequence item {i}: expected str instance, {} found",
                            it.type_name(other)
                        )))
                    }
                }
            }
            Value::str(&out)
        }
        "split" | "rsplit" => {
            let sep = match a.first().or(kwarg(kw, "sep")) {
                Some(Value::Str(p)) => Some(p.to_string()),
                _ => None,
            };
            let maxsplit = match a.get(1).or(kwarg(kw, "maxsplit")) {
                Some(Value::Int(n)) if *n >= 0 => Some(*n as usize),
                _ => None,
            };
            let parts: Vec<String> = match (&sep, maxsplit) {
                (None, None) => s.split_whitespace().map(String::from).collect(),
                (None, Some(n)) => {
                    let mut v: Vec<String> = Vec::new();
                    let mut rest = s.trim_start();
                    while !rest.is_empty() {
                        if v.len() == n {
                            v.push(rest.to_string());
                            break;
                        }
                        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                        v.push(rest[..end].to_string());
                        rest = rest[end..].trim_start();
                    }
                    v
                }
                (Some(p), None) => s.split(p.as_str()).map(String::from).collect(),
                (Some(p), Some(n)) => {
                    if name == "split" {
                        s.splitn(n + 1, p.as_str()).map(String::from).collect()
                    } else {
                        let mut v: Vec<String> =
                            s.rsplitn(n + 1, p.as_str()).map(String::from).collect();
                        v.reverse();
                        v
                    }
                }
            };
            it.new_list(parts.iter().map(|p| Value::str(p)).collect())
        }
        "splitlines" => it.new_list(s.lines().map(Value::str).collect()),
        "strip" | "lstrip" | "rstrip" => {
            let chars: Option<Vec<char>> = match a.first() {
                Some(Value::Str(c)) => Some(c.chars().collect()),
                _ => None,
            };
            let pred = |c: char| match &chars {
                Some(cs) => cs.contains(&c),
                None => c.is_whitespace(),
            };
            let r = match name {
                "strip" => s.trim_matches(pred),
                "lstrip" => s.trim_start_matches(pred),
                _ => s.trim_end_matches(pred),
            };
            Value::str(r)
        }
        "startswith" | "endswith" => {
            let check = |p: &str| {
                if name == "startswith" {
                    s.starts_with(p)
                } else {
                    s.ends_with(p)
                }
            };
            match &a[0] {
                Value::Str(p) => bool_(check(p)),
                Value::Tuple(t) => bool_(
                    t.items
                        .iter()
                        .any(|x| matches!(x, Value::Str(p) if check(p))),
                ),
                _ => {
                    return Err(it.type_error("startswith first arg must be str or a tuple of str"))
                }
            }
        }
        "upper" => Value::str(&s.to_uppercase()),
        "lower" => Value::str(&s.to_lowercase()),
        "swapcase" => Value::str(
            &s.chars()
                .map(|c| {
                    if c.is_uppercase() {
                        c.to_lowercase().collect::<String>()
                    } else {
                        c.to_uppercase().collect()
                    }
                })
                .collect::<String>(),
        ),
        "title" => {
            let mut out = String::new();
            let mut prev_alpha = false;
            for c in s.chars() {
                if c.is_alphabetic() {
                    if prev_alpha {
                        out.extend(c.to_lowercase());
                    } else {
                        out.extend(c.to_uppercase());
                    }
                    prev_alpha = true;
                } else {
                    out.push(c);
                    prev_alpha = false;
                }
            }
            Value::str(&out)
        }
        "capitalize" => {
            let mut cs = s.chars();
            let out = match cs.next() {
                Some(c) => c.to_uppercase().collect::<String>() + &cs.as_str().to_lowercase(),
                None => String::new(),
            };
            Value::str(&out)
        }
        "replace" => {
            let from = str_arg(it, a, 0, "replace")?;
            let to = str_arg(it, a, 1, "replace")?;
            match a.get(2) {
                Some(Value::Int(n)) if *n >= 0 => Value::str(&s.replacen(from, to, *n as usize)),
                _ => Value::str(&s.replace(from, to)),
            }
        }
        "format" => Value::str(&crate::format::str_format(it, s, a, kw)?),
        "find" | "index" | "rfind" => {
            let p = str_arg(it, a, 0, name)?;
            let r = if name == "rfind" {
                s.rfind(p)
            } else {
                s.find(p)
            };
            match r {
                Some(b) => Value::Int(s[..b].chars().count() as i64),
                None if name == "index" => return Err(it.exc("ValueError", "substring not found")),
                None => Value::Int(-1),
            }
        }
        "count" => {
            let p = str_arg(it, a, 0, "count")?;
            if p.is_empty() {
                Value::Int(s.chars().count() as i64 + 1)
            } else {
                Value::Int(s.matches(p).count() as i64)
            }
        }
        "isdigit" => bool_(!s.is_empty() && s.chars().all(|c| c.is_ascii_digit())),
        "isalpha" => bool_(!s.is_empty() && s.chars().all(char::is_alphabetic)),
        "isalnum" => bool_(!s.is_empty() && s.chars().all(char::is_alphanumeric)),
        "isspace" => bool_(!s.is_empty() && s.chars().all(char::is_whitespace)),
        "isupper" => bool_(s.chars().any(char::is_uppercase) && !s.chars().any(char::is_lowercase)),
        "islower" => bool_(s.chars().any(char::is_lowercase) && !s.chars().any(char::is_uppercase)),
        "isidentifier" => bool_(
            !s.is_empty()
                && !s.starts_with(|c: char| c.is_ascii_digit())
                && s.chars().all(|c| c.is_alphanumeric() || c == '_'),
        ),
        "zfill" | "center" | "ljust" | "rjust" => {
            let w = match a.first() {
                Some(Value::Int(w)) => *w as usize,
                _ => return Err(it.type_error("integer argument expected")),
            };
            let fill = match a.get(1) {
                Some(Value::Str(f)) => f.chars().next().unwrap_or(' '),
                _ => ' ',
            };
            let n = s.chars().count();
            if n >= w {
                Value::Str(s.clone())
            } else {
                let pad = w - n;
                let r = match name {
                    "zfill" => {
                        let (sign, rest) = if s.starts_with('-') || s.starts_with('+') {
                            s.split_at(1)
                        } else {
                            ("", &s[..])
                        };
                        format!("{sign}{}{rest}", "0".repeat(pad))
                    }
                    "ljust" => format!("{s}{}", fill.to_string().repeat(pad)),
                    "rjust" => format!("{}{s}", fill.to_string().repeat(pad)),
                    _ => {
                        let left = pad / 2 + (pad & w & 1);
                        let right = pad - left;
                        format!(
                            "{}{s}{}",
                            fill.to_string().repeat(left),
                            fill.to_string().repeat(right)
                        )
                    }
                };
                Value::str(&r)
            }
        }
        "partition" | "rpartition" => {
            let p = str_arg(it, a, 0, name)?;
            let pos = if name == "partition" {
                s.find(p)
            } else {
                s.rfind(p)
            };
            let (x, y, z) = match pos {
                Some(i) => (&s[..i], p, &s[i + p.len()..]),
                None if name == "partition" => (&s[..], "", ""),
                None => ("", "", &s[..]),
            };
            it.new_tuple(vec![Value::str(x), Value::str(y), Value::str(z)])
        }
        "encode" => Value::Str(s.clone()),
        _ => return Err(it.attr_error(&Value::Str(s.clone()), name)),
    })
}

fn list_method(
    it: &Interp,
    recv: &Value,
    l: &Gc<List>,
    name: &str,
    a: &[Value],
    kw: &[(Rc<str>, Value)],
) -> PyResult {
    Ok(match name {
        "append" => {
            arity(it, "append", a, 1)?;
            l.items.borrow_mut().push(a[0].clone());
            Value::None
        }
        "extend" => {
            let items = it.collect(&a[0])?;
            l.items.borrow_mut().extend(items);
            Value::None
        }
        "insert" => {
            let len = l.items.borrow().len() as i64;
            let i = match &a[0] {
                Value::Int(i) => {
                    let i = if *i < 0 {
                        (*i + len).max(0)
                    } else {
                        (*i).min(len)
                    };
                    i as usize
                }
                _ => return Err(it.type_error("integer argument expected")),
            };
            l.items.borrow_mut().insert(i, a[1].clone());
            Value::None
        }
        "pop" => {
            let len = l.items.borrow().len();
            if len == 0 {
                return Err(it.exc("IndexError", "pop from empty list"));
            }
            let i = match a.first() {
                Some(v) => {
                    index(it, v, len).map_err(|_| it.exc("IndexError", "pop index out of range"))?
                }
                None => len - 1,
            };
            let v = l.items.borrow_mut().remove(i);
            v
        }
        "remove" => {
            let items = l.items.borrow().clone();
            for (i, x) in items.iter().enumerate() {
                if x.is(&a[0]) || it.eq(x, &a[0])? {
                    let old = l.items.borrow_mut().remove(i);
                    drop(items);
                    drop(old);
                    return Ok(Value::None);
                }
            }
            return Err(it.exc("ValueError", "list.remove(x): x not in list"));
        }
        "index" => {
            let items = l.items.borrow().clone();
            for (i, x) in items.iter().enumerate() {
                if x.is(&a[0]) || it.eq(x, &a[0])? {
                    return Ok(Value::Int(i as i64));
                }
            }
            return Err(it.exc("ValueError", format!("{} is not in list", repr(it, &a[0])?)));
        }
        "count" => {
            let items = l.items.borrow().clone();
            let mut n = 0;
            for x in items.iter() {
                if x.is(&a[0]) || it.eq(x, &a[0])? {
                    n += 1;
                }
            }
            Value::Int(n)
        }
        "sort" => {
            let mut items = std::mem::take(&mut *l.items.borrow_mut());
            let rev = match kwarg(kw, "reverse") {
                Some(v) => it.truthy(v)?,
                None => false,
            };
            let r = sort_values(it, &mut items, kwarg(kw, "key"), rev);
            let old = std::mem::replace(&mut *l.items.borrow_mut(), items);
            drop(old);
            r?;
            Value::None
        }
        "reverse" => {
            l.items.borrow_mut().reverse();
            Value::None
        }
        "clear" => {
            let old = std::mem::take(&mut *l.items.borrow_mut());
            drop_rev(old);
            Value::None
        }
        "copy" => {
            let items = l.items.borrow().clone();
            it.new_list(items)
        }
        _ => return Err(it.attr_error(recv, name)),
    })
}

fn dict_method(it: &Interp, d: &Gc<Dict>, name: &str, a: &[Value]) -> PyResult {
    Ok(match name {
        "get" => match it.dict_get(d, &a[0])? {
            Some(v) => v,
            None => a.get(1).cloned().unwrap_or(Value::None),
        },
        "keys" => it.new_native(NativeKind::DictView(d.clone(), 0)),
        "values" => it.new_native(NativeKind::DictView(d.clone(), 1)),
        "items" => it.new_native(NativeKind::DictView(d.clone(), 2)),
        "pop" => match it.dict_del(d, &a[0])? {
            Some(v) => v,
            None => match a.get(1) {
                Some(v) => v.clone(),
                None => {
                    let cls = it.types.exceptions["KeyError"].clone();
                    return Err(crate::interp::Exc(
                        it.new_exception(cls, vec![a[0].clone()]),
                    ));
                }
            },
        },
        "popitem" => {
            let e = {
                let mut t = d.t.borrow_mut();
                let slot = t.last_slot();
                slot.map(|s| t.remove_at(s))
            };
            match e {
                Some(e) => it.new_tuple(vec![e.key, e.value]),
                None => return Err(it.exc("KeyError", "popitem(): dictionary is empty")),
            }
        }
        "setdefault" => match it.dict_get(d, &a[0])? {
            Some(v) => v,
            None => {
                let v = a.get(1).cloned().unwrap_or(Value::None);
                it.dict_set(d, a[0].clone(), v.clone())?;
                v
            }
        },
        "update" => {
            if let Some(m) = a.first() {
                let pairs = match m {
                    Value::Dict(_) => it.items_of(m)?,
                    _ => {
                        let mut out = Vec::new();
                        for p in it.collect(m)? {
                            let kv = it.collect(&p)?;
                            if kv.len() == 2 {
                                out.push((kv[0].clone(), kv[1].clone()));
                            }
                        }
                        out
                    }
                };
                for (k, v) in pairs {
                    it.dict_set(d, k, v)?;
                }
            }
            Value::None
        }
        "clear" => {
            let old = d.t.borrow_mut().take_all();
            drop(old);
            Value::None
        }
        "copy" => {
            let t = d.t.borrow().copy();
            Value::Dict(it.heap.alloc(Dict { t: RefCell::new(t) }))
        }
        _ => return Err(it.attr_error(&Value::Dict(d.clone()), name)),
    })
}

fn set_method(it: &Interp, s: &Gc<Set>, name: &str, a: &[Value]) -> PyResult {
    Ok(match name {
        "add" => {
            it.set_add(s, a[0].clone())?;
            Value::None
        }
        "remove" | "discard" => {
            let h = it.hash(&a[0])?;
            let slot = it.table_find(&s.t, h, &a[0])?;
            match slot {
                Some(sl) => {
                    let old = s.t.borrow_mut().remove_at(sl);
                    drop(old);
                }
                None if name == "remove" => {
                    let cls = it.types.exceptions["KeyError"].clone();
                    return Err(crate::interp::Exc(
                        it.new_exception(cls, vec![a[0].clone()]),
                    ));
                }
                None => {}
            }
            Value::None
        }
        "pop" => {
            let first = set_order(&s.t.borrow()).into_iter().next();
            match first {
                Some(k) => {
                    let h = it.hash(&k)?;
                    let slot = it.table_find(&s.t, h, &k)?;
                    if let Some(sl) = slot {
                        let old = s.t.borrow_mut().remove_at(sl);
                        drop(old);
                    }
                    k
                }
                None => return Err(it.exc("KeyError", "pop from an empty set")),
            }
        }
        "clear" => {
            let old = s.t.borrow_mut().take_all();
            drop(old);
            Value::None
        }
        "copy" => {
            let t = s.t.borrow().copy();
            Value::Set(it.heap.alloc(Set { t: RefCell::new(t) }))
        }
        "update" => {
            for v in a {
                for x in it.collect(v)? {
                    it.set_add(s, x)?;
                }
            }
            Value::None
        }
        "union" | "intersection" | "difference" | "symmetric_difference" => {
            let other = it.heap.alloc(Set::default());
            for x in it.collect(&a[0])? {
                it.set_add(&other, x)?;
            }
            let op = match name {
                "union" => BinOp::BitOr,
                "intersection" => BinOp::BitAnd,
                "difference" => BinOp::Sub,
                _ => BinOp::BitXor,
            };
            arith(it, op, &Value::Set(s.clone()), &Value::Set(other))?.unwrap_or(Value::None)
        }
        "issubset" | "issuperset" | "isdisjoint" => {
            let other = it.heap.alloc(Set::default());
            for x in it.collect(&a[0])? {
                it.set_add(&other, x)?;
            }
            let (small, big) = if name == "issubset" {
                (s.clone(), other)
            } else {
                (other, s.clone())
            };
            let keys = small.t.borrow().keys();
            let mut all = true;
            let mut none = true;
            for k in keys {
                if it.set_contains(&big, &k)? {
                    none = false;
                } else {
                    all = false;
                }
            }
            Value::Bool(if name == "isdisjoint" { none } else { all })
        }
        _ => return Err(it.attr_error(&Value::Set(s.clone()), name)),
    })
}

//! The value model: how Python objects map onto reap.
//!
//! Immediates (`None`, `bool`, `int`, `float`, `str`) are inline in [`Value`]; everything with
//! an identity that can take part in a cycle is a reap heap object (`Gc<T>`), one Rust type per
//! kind of object ([`List`], [`Tuple`], [`Dict`], [`Set`], [`Instance`], [`Class`],
//! [`Function`], [`Method`], [`Module`], [`CellObj`], [`Native`]). Weak references are reap
//! `Weak<dyn Any>`s, inline in the value.

use std::any::Any;
use std::cell::RefCell;
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use reap::{gc_coerce, AnyGc, ByIdentity, Gc, KeyEq, Trace, Weak, WeakKeyMap, WeakValueMap};

use crate::compile::Code;
use crate::table::Table;

/// A Python value. Cloning a heap variant is an incref; dropping it a decref (which may run
/// `__del__` and weak-reference callbacks: see the re-entrancy rule in docs/EMBEDDING.md).
#[derive(Trace)]
pub enum Value {
    /// `None`
    None,
    /// `True` / `False`
    Bool(bool),
    /// `int`, 64-bit (overflow raises `OverflowError`).
    Int(i64),
    /// `float`
    Float(f64),
    /// `str`: immutable, not a heap object (CPython does not track strings either).
    Str(Rc<str>),
    /// `list`
    List(Gc<List>),
    /// `tuple`
    Tuple(Gc<Tuple>),
    /// `dict`
    Dict(Gc<Dict>),
    /// `set`
    Set(Gc<Set>),
    /// An instance of a user class (exceptions included).
    Instance(Gc<Instance>),
    /// A class, built-in types included.
    Class(Gc<Class>),
    /// A function defined in Python (`def`, `lambda`).
    Function(Gc<Function>),
    /// A bound method.
    Method(Gc<Method>),
    /// A built-in function (`len`, `print`, `gc.collect` …): a static table index.
    Builtin(BuiltinId),
    /// A module (`gc`, `weakref`, `sys`).
    Module(Gc<Module>),
    /// A closure cell (only seen through `gc` introspection).
    Cell(Gc<CellObj>),
    /// Other native objects: iterators, weak containers, proxies, `finalize` …
    Native(Gc<Native>),
    /// `weakref.ref`: reap's own weak reference (its identity is the weak-reference object).
    WeakRef(Box<Weak<dyn Any>>),
}

impl Clone for Value {
    #[inline]
    fn clone(&self) -> Self {
        match self {
            Value::None => Value::None,
            Value::Bool(b) => Value::Bool(*b),
            Value::Int(i) => Value::Int(*i),
            Value::Float(f) => Value::Float(*f),
            Value::Str(s) => Value::Str(s.clone()),
            Value::List(g) => Value::List(g.clone()),
            Value::Tuple(g) => Value::Tuple(g.clone()),
            Value::Dict(g) => Value::Dict(g.clone()),
            Value::Set(g) => Value::Set(g.clone()),
            Value::Instance(g) => Value::Instance(g.clone()),
            Value::Class(g) => Value::Class(g.clone()),
            Value::Function(g) => Value::Function(g.clone()),
            Value::Method(g) => Value::Method(g.clone()),
            Value::Builtin(b) => Value::Builtin(*b),
            Value::Module(g) => Value::Module(g.clone()),
            Value::Cell(g) => Value::Cell(g.clone()),
            Value::Native(g) => Value::Native(g.clone()),
            Value::WeakRef(w) => Value::WeakRef(w.clone()),
        }
    }
}

/// Index of a built-in function in [`crate::builtins::BUILTINS`].
#[derive(Clone, Copy, PartialEq, Eq, Trace)]
pub struct BuiltinId(pub u16);

/// `list`
#[derive(Trace, Default)]
pub struct List {
    /// The items.
    pub items: RefCell<Vec<Value>>,
}

/// `tuple`
#[derive(Trace)]
pub struct Tuple {
    /// The items (immutable).
    pub items: Box<[Value]>,
    /// The number of collections when it was made (CPython untracks a tuple of atoms when a
    /// collection sees it; `gc.is_tracked` emulates that).
    pub born: std::cell::Cell<u64>,
}

/// `dict`: an insertion-ordered hash table.
#[derive(Trace, Default)]
pub struct Dict {
    /// The table.
    pub t: RefCell<Table>,
}

/// `set`: the same table with `None` values.
#[derive(Trace, Default)]
pub struct Set {
    /// The table.
    pub t: RefCell<Table>,
}

/// An instance's `__dict__`: inline until Python code asks for it (as CPython 3.11's managed
/// dicts, so that `gc.collect()` counts an instance as one object until `obj.__dict__` is read).
#[derive(Trace)]
pub enum InstDict {
    /// Not materialized: the attributes live in the instance.
    Inline(Table),
    /// Materialized: a real `dict` object, shared with Python code.
    Obj(Gc<Dict>),
}

/// An instance of a user class. Exceptions carry their `args` and traceback in `exc`.
#[derive(Trace)]
#[reap(finalize)]
pub struct Instance {
    /// `__class__`
    pub class: Gc<Class>,
    /// For instances of subclasses of native types (`class R(weakref.ref)`): the native part.
    /// Declared before the dict so it is released first (a weak-reference subclass dies as a
    /// weak reference before its attributes go, as in CPython).
    pub base: Option<Value>,
    /// `__dict__`
    pub dict: RefCell<InstDict>,
    /// For exception instances: args, traceback entries (holding the frames' locals).
    pub exc: RefCell<Option<Box<ExcState>>>,
}

/// The traced state of a weak reference whose callback receives a native object (a proxy, a
/// `WeakMethod`): the Python callback and a weak reference to that object.
#[derive(Trace)]
pub struct CbState {
    /// The Python callback (`None`: none).
    pub cb: Value,
    /// The object the callback receives.
    pub me: RefCell<Option<Weak<Native>>>,
    /// Whether it ran (a `WeakMethod` has two weak references and calls back once).
    pub fired: std::cell::Cell<bool>,
}

/// The state of an exception instance.
#[derive(Trace, Default)]
pub struct ExcState {
    /// `args`
    pub args: Vec<Value>,
    /// Traceback, innermost first; each entry keeps that frame's locals alive (as a CPython
    /// traceback keeps its frames).
    pub tb: Vec<TbEntry>,
    /// Line of the innermost statement not yet pushed to `tb`.
    pub pending_line: Option<u32>,
    /// `__cause__` / `__context__` (not printed yet).
    pub cause: Option<Value>,
}

/// One traceback entry.
#[derive(Trace)]
pub struct TbEntry {
    /// Function name.
    pub name: Rc<str>,
    /// Line.
    pub line: u32,
    /// The frame's locals and cells at the time the exception left it.
    pub locals: Vec<Option<Value>>,
}

/// Which built-in type a class stands for (user classes: `User`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Trace)]
#[allow(missing_docs)]
pub enum Kind {
    User,
    Object,
    Type,
    Int,
    Bool,
    Float,
    Str,
    List,
    Tuple,
    Dict,
    Set,
    NoneType,
    Function,
    Method,
    BuiltinFunction,
    Module,
    Cell,
    Native,
    WeakRef,
    Exception,
    Range,
    FrozenSet,
    Finalize,
    WeakMethod,
}

/// A class (user classes and the built-in types alike).
#[derive(Trace)]
pub struct Class {
    /// `__name__`
    pub name: Rc<str>,
    /// `__qualname__`
    pub qualname: Rc<str>,
    /// The single base (`None` only for `object`).
    pub base: Option<Gc<Class>>,
    /// The class namespace.
    pub dict: Gc<Dict>,
    /// `__mro__`, a tuple that holds the class itself: like CPython's, a class is always in a
    /// cycle and only the collector frees it.
    pub mro: RefCell<Option<Gc<Tuple>>>,
    /// `__bases__`
    pub bases: RefCell<Option<Gc<Tuple>>>,
    /// The built-in type it stands for.
    pub kind: Kind,
    /// Whether it derives from `BaseException`.
    pub is_exc: bool,
    /// Where names were found along the base chain, valid while no class namespace changes.
    #[reap(skip)]
    pub cache: RefCell<LookupCache>,
}

/// A class's attribute-lookup cache: (hash, name, where) with where = (depth in the base chain,
/// slot in that class's table), or `None` for a name found nowhere. It holds no values, so it
/// keeps no object alive.
#[derive(Default)]
pub struct LookupCache {
    /// The [`crate::table::class_epoch`] the entries are valid for.
    pub epoch: u64,
    /// The entries.
    #[allow(clippy::type_complexity)]
    /// (hash, name, address of a `&'static str` it was looked up by, where).
    pub entries: Vec<(u64, Rc<str>, usize, Option<(u32, usize)>)>,
}

/// A function defined in Python.
#[derive(Trace)]
pub struct Function {
    /// Compiled code.
    #[reap(skip)]
    pub code: Rc<Code>,
    /// The module's globals.
    pub globals: Gc<Dict>,
    /// Positional defaults (for the last parameters).
    pub defaults: Vec<Value>,
    /// Keyword-only defaults, by kw-only index.
    pub kw_defaults: Vec<Option<Value>>,
    /// `__closure__`: a tuple of cells, as in CPython (so a closure counts as function + tuple
    /// + cells in `gc.collect()`).
    pub closure: Option<Gc<Tuple>>,
    /// `__dict__`, made on first use.
    pub dict: RefCell<Option<Gc<Dict>>>,
    /// `__name__`
    pub name: RefCell<Rc<str>>,
}

/// A bound method.
#[derive(Trace)]
pub struct Method {
    /// `__self__`
    pub recv: Value,
    /// `__func__`
    pub func: Value,
}

/// A module.
#[derive(Trace)]
pub struct Module {
    /// `__name__`
    pub name: Rc<str>,
    /// `__dict__`
    pub dict: Gc<Dict>,
}

/// A closure cell.
#[derive(Trace, Default)]
pub struct CellObj {
    /// The contents (`None`: empty).
    pub value: RefCell<Option<Value>>,
}

/// Native objects other than the core types.
#[derive(Trace)]
pub struct Native {
    /// What it is.
    pub kind: NativeKind,
}

/// A key of a `WeakValueDictionary`: Python equality and hash for the hashable immutables,
/// identity for objects.
#[derive(Clone, Trace)]
pub struct HKey(pub Value);

/// The kinds of [`Native`] objects.
#[derive(Trace)]
#[allow(missing_docs)]
pub enum NativeKind {
    /// A built-in method bound to its receiver (`lst.append`).
    BoundBuiltin { recv: Value, name: Rc<str> },
    /// An iterator.
    Iter(RefCell<IterState>),
    /// `range(start, stop, step)`
    Range { start: i64, stop: i64, step: i64 },
    /// `staticmethod(f)`
    StaticMethod(Value),
    /// `classmethod(f)`
    ClassMethod(Value),
    /// `property(fget, fset)`
    Property(Value, Value),
    /// A class's `__dict__`/`__weakref__` descriptor (held for `gc` counts to match CPython).
    GetSet(Gc<Class>),
    /// `weakref.WeakValueDictionary`
    WeakValueDict(WeakValueMap<HKey, dyn Any>),
    /// `weakref.WeakKeyDictionary` (keys compared by `__hash__`/`__eq__`)
    WeakKeyDict(WeakKeyMap<dyn Any, Value, PyKeyEq>),
    /// `weakref.WeakSet` (items compared by `__hash__`/`__eq__`)
    WeakSet(WeakKeyMap<dyn Any, (), PyKeyEq>),
    /// `weakref.proxy`: a weak reference of its own (with a traced, possibly empty, callback),
    /// as reap's `WeakProxy` has, but whose callback gets the proxy object.
    Proxy(Weak<dyn Any>),
    /// `weakref.finalize`
    Finalize(crate::modules::FinalizeObj),
    /// `weakref.WeakMethod`
    WeakMethod {
        recv: Weak<dyn Any>,
        func: Weak<dyn Any>,
    },
    /// `object()`
    Object,
    /// `super()`: the class whose base to search, and the instance.
    Super(Gc<Class>, Value),
    /// A method of a built-in type taken from the type (`str.upper`).
    UnboundBuiltin { kind: Kind, name: Rc<str> },
    /// `slice(a, b, c)`
    Slice(Value, Value, Value),
    /// `sys.stdout` (1) / `sys.stderr` (2)
    Stream(u8),
    /// `d.keys()` (0), `d.values()` (1), `d.items()` (2)
    DictView(Gc<Dict>, u8),
}

/// The state of an iterator.
#[derive(Trace)]
#[allow(missing_docs)]
pub enum IterState {
    Seq(Value, usize),
    Range(i64, i64, i64),
    Vec(Vec<Value>, usize),
    Str(Rc<str>, usize),
    User(Value),
    Done,
}

impl Value {
    /// The heap object behind the value, type-erased (for weak references and `gc`).
    pub fn as_any(&self) -> Option<AnyGc> {
        Some(match self {
            Value::List(g) => gc_coerce!(g.clone() => dyn Any),
            Value::Tuple(g) => gc_coerce!(g.clone() => dyn Any),
            Value::Dict(g) => gc_coerce!(g.clone() => dyn Any),
            Value::Set(g) => gc_coerce!(g.clone() => dyn Any),
            Value::Instance(g) => gc_coerce!(g.clone() => dyn Any),
            Value::Class(g) => gc_coerce!(g.clone() => dyn Any),
            Value::Function(g) => gc_coerce!(g.clone() => dyn Any),
            Value::Method(g) => gc_coerce!(g.clone() => dyn Any),
            Value::Module(g) => gc_coerce!(g.clone() => dyn Any),
            Value::Cell(g) => gc_coerce!(g.clone() => dyn Any),
            Value::Native(g) => gc_coerce!(g.clone() => dyn Any),
            _ => return None,
        })
    }

    /// Back from a type-erased handle; `None` for runtime-internal objects.
    pub fn from_any(any: AnyGc) -> Option<Value> {
        let any = match any.downcast::<Instance>() {
            Ok(g) => return Some(Value::Instance(g)),
            Err(a) => a,
        };
        let any = match any.downcast::<List>() {
            Ok(g) => return Some(Value::List(g)),
            Err(a) => a,
        };
        let any = match any.downcast::<Dict>() {
            Ok(g) => return Some(Value::Dict(g)),
            Err(a) => a,
        };
        let any = match any.downcast::<Tuple>() {
            Ok(g) => return Some(Value::Tuple(g)),
            Err(a) => a,
        };
        let any = match any.downcast::<Set>() {
            Ok(g) => return Some(Value::Set(g)),
            Err(a) => a,
        };
        let any = match any.downcast::<Class>() {
            Ok(g) => return Some(Value::Class(g)),
            Err(a) => a,
        };
        let any = match any.downcast::<Function>() {
            Ok(g) => return Some(Value::Function(g)),
            Err(a) => a,
        };
        let any = match any.downcast::<Method>() {
            Ok(g) => return Some(Value::Method(g)),
            Err(a) => a,
        };
        let any = match any.downcast::<Module>() {
            Ok(g) => return Some(Value::Module(g)),
            Err(a) => a,
        };
        let any = match any.downcast::<CellObj>() {
            Ok(g) => return Some(Value::Cell(g)),
            Err(a) => a,
        };
        match any.downcast::<Native>() {
            Ok(g) => Some(Value::Native(g)),
            Err(_) => None,
        }
    }

    /// `id(v)`: the object's address (immediates: an address derived from the value).
    pub fn id(&self) -> usize {
        match self {
            Value::None => 0x1000,
            Value::Bool(b) => 0x2000 + *b as usize,
            Value::Int(i) => 0x10_0000_0000usize.wrapping_add((*i as usize).wrapping_mul(32)),
            Value::Float(f) => f.to_bits() as usize,
            Value::Str(s) => Rc::as_ptr(s) as *const u8 as usize,
            Value::Builtin(b) => 0x3000 + b.0 as usize * 16,
            Value::WeakRef(w) => Weak::as_ptr(w) as usize,
            other => match other.as_any() {
                Some(a) => Gc::as_ptr(&a) as *const () as usize,
                None => 0,
            },
        }
    }

    /// `a is b`
    pub fn is(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::None, Value::None) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b && (-5..=256).contains(a),
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (Value::Str(a), Value::Str(b)) => Rc::ptr_eq(a, b) || (a.len() <= 1 && a == b),
            (Value::Builtin(a), Value::Builtin(b)) => a == b,
            (Value::WeakRef(a), Value::WeakRef(b)) => a.ptr_eq(b),
            (Value::List(a), Value::List(b)) => Gc::ptr_eq(a, b),
            (Value::Tuple(a), Value::Tuple(b)) => Gc::ptr_eq(a, b),
            (Value::Dict(a), Value::Dict(b)) => Gc::ptr_eq(a, b),
            (Value::Set(a), Value::Set(b)) => Gc::ptr_eq(a, b),
            (Value::Instance(a), Value::Instance(b)) => Gc::ptr_eq(a, b),
            (Value::Class(a), Value::Class(b)) => Gc::ptr_eq(a, b),
            (Value::Function(a), Value::Function(b)) => Gc::ptr_eq(a, b),
            (Value::Method(a), Value::Method(b)) => Gc::ptr_eq(a, b),
            (Value::Module(a), Value::Module(b)) => Gc::ptr_eq(a, b),
            (Value::Cell(a), Value::Cell(b)) => Gc::ptr_eq(a, b),
            (Value::Native(a), Value::Native(b)) => Gc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// A string value.
    pub fn str(s: &str) -> Value {
        Value::Str(Rc::from(s))
    }
}

impl Instance {
    /// Runs `f` on the instance's attribute table.
    pub fn with_table<R>(&self, f: impl FnOnce(&Table) -> R) -> R {
        let d = self.dict.borrow();
        match &*d {
            InstDict::Inline(t) => f(t),
            InstDict::Obj(o) => f(&o.t.borrow()),
        }
    }

    /// Runs `f` on the instance's attribute table, mutably. `f` must not drop values.
    pub fn with_table_mut<R>(&self, f: impl FnOnce(&mut Table) -> R) -> R {
        let mut d = self.dict.borrow_mut();
        match &mut *d {
            InstDict::Inline(t) => f(t),
            InstDict::Obj(o) => f(&mut o.t.borrow_mut()),
        }
    }
}

/// Fast hash of a string (FxHash-like), used for `str` keys everywhere.
#[inline]
pub fn str_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for chunk in s.as_bytes().chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    let h = h ^ (h >> 29) ^ (s.len() as u64);
    // Python hashes are never -1.
    if h == u64::MAX {
        h - 1
    } else {
        h
    }
}

/// Python's `hash()` for an int.
pub fn int_hash(i: i64) -> u64 {
    const M: i128 = (1i128 << 61) - 1;
    let mut h = (i as i128).rem_euclid(M);
    if i < 0 {
        h = -((-(i as i128)) % M);
    }
    let h = h as i64;
    (if h == -1 { -2 } else { h }) as u64
}

/// Python's `hash()` for a float.
pub fn float_hash(f: f64) -> u64 {
    if f.fract() == 0.0 && f.abs() < 9.2e18 {
        return int_hash(f as i64);
    }
    if f.is_nan() {
        return 0;
    }
    // Not CPython's exact algorithm for non-integral floats, but stable and consistent.
    let h = f.to_bits().wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 3;
    if h == u64::MAX {
        h - 1
    } else {
        h
    }
}

/// CPython's tuple hash (xxHash-based) over item hashes.
pub fn tuple_hash(items: impl ExactSizeIterator<Item = u64>) -> u64 {
    const P1: u64 = 11400714785074694791;
    const P2: u64 = 14029467366897019727;
    const P5: u64 = 2870177450012600261;
    let len = items.len() as u64;
    let mut acc: u64 = P5;
    for lane in items {
        acc = acc.wrapping_add(lane.wrapping_mul(P2));
        acc = acc.rotate_left(31);
        acc = acc.wrapping_mul(P1);
    }
    acc = acc.wrapping_add(len ^ (P5 ^ 3527539));
    if acc == u64::MAX {
        return 1546275796;
    }
    acc
}

/// Native hash for hashable immutables (`None` for objects needing the interpreter).
pub fn native_hash(v: &Value) -> Option<u64> {
    Some(match v {
        Value::None => 0x5f3759df,
        Value::Bool(b) => *b as u64,
        Value::Int(i) => int_hash(*i),
        Value::Float(f) => float_hash(*f),
        Value::Str(s) => str_hash(s),
        Value::Tuple(t) => {
            let mut hs = Vec::with_capacity(t.items.len());
            for i in t.items.iter() {
                hs.push(native_hash(i)?);
            }
            tuple_hash(hs.into_iter())
        }
        _ => return None,
    })
}

/// Native equality for keys: identity, or value equality of immutables. `None` when the
/// interpreter must decide (an instance with `__eq__`).
pub fn native_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => Rc::ptr_eq(x, y) || x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Bool(y)) | (Value::Bool(y), Value::Int(x)) => *x == *y as i64,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Float(x), Value::Int(y)) | (Value::Int(y), Value::Float(x)) => *x == *y as f64,
        (Value::Float(x), Value::Bool(y)) | (Value::Bool(y), Value::Float(x)) => {
            *x == *y as i64 as f64
        }
        (Value::None, Value::None) => true,
        (Value::Tuple(x), Value::Tuple(y)) => {
            Gc::ptr_eq(x, y)
                || (x.items.len() == y.items.len()
                    && x.items
                        .iter()
                        .zip(y.items.iter())
                        .all(|(a, b)| native_eq(a, b)))
        }
        _ => a.is(b),
    }
}

impl PartialEq for HKey {
    fn eq(&self, other: &Self) -> bool {
        native_eq(&self.0, &other.0)
    }
}
impl Eq for HKey {}
impl Hash for HKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(native_hash(&self.0).unwrap_or_else(|| self.0.id() as u64));
    }
}

impl Drop for List {
    /// CPython's `list_dealloc` releases the items from the last to the first.
    fn drop(&mut self) {
        let items = self.items.get_mut();
        while let Some(v) = items.pop() {
            drop(v);
        }
    }
}

impl Drop for Tuple {
    /// CPython's `tupledealloc` releases the items from the last to the first.
    fn drop(&mut self) {
        let items = std::mem::take(&mut self.items);
        let mut items = items.into_vec();
        while let Some(v) = items.pop() {
            drop(v);
        }
    }
}

/// How `WeakKeyDictionary` and `WeakSet` compare keys: by the language's `hash()` and `==`,
/// run through the interpreter (reached from the key's heap). An exception there (an unhashable
/// key) is parked in `Interp::key_error`, for the operation to raise once the map returns.
pub struct PyKeyEq;

impl KeyEq<dyn Any> for PyKeyEq {
    fn hash(key: &Gc<dyn Any>) -> u64 {
        let by_identity = || <ByIdentity as KeyEq<dyn Any>>::hash(key);
        let Some(it) = Gc::user_data::<crate::interp::Interp>(key) else {
            return by_identity();
        };
        let Some(v) = Value::from_any(key.clone()) else {
            return by_identity();
        };
        match it.hash(&v) {
            Ok(h) => h,
            Err(e) => {
                it.key_error.borrow_mut().get_or_insert(e);
                by_identity()
            }
        }
    }

    fn eq(a: &Gc<dyn Any>, b: &Gc<dyn Any>) -> bool {
        // No identity shortcut: CPython's weak-keyed lookups compare referents with `==`,
        // which calls `__eq__` even on the same object.
        let Some(it) = Gc::user_data::<crate::interp::Interp>(a) else {
            return false;
        };
        let (Some(va), Some(vb)) = (Value::from_any(a.clone()), Value::from_any(b.clone())) else {
            return false;
        };
        match it.eq(&va, &vb) {
            Ok(eq) => eq,
            Err(e) => {
                it.key_error.borrow_mut().get_or_insert(e);
                false
            }
        }
    }
}

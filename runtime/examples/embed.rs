//! A tiny Python-like value model on reap, the runnable companion of `docs/EMBEDDING.md`. It
//! mirrors this Python program and prints what `python3` prints for it (checked by
//! `runtime/tests/examples_output.rs`):
//!
//! ```python
//! import gc, sys, weakref
//! def hook(u):
//!     print(f"Exception ignored in: <function {u.object.__qualname__}>: "
//!           f"{type(u.exc_value).__name__}: {u.exc_value}")
//! sys.unraisablehook = hook
//! gc.disable()
//! dels = 0
//! def show(o):
//!     return f"<{type(o).__name__} {o.name}>" if hasattr(o, "name") else f"<class {o.__name__}>"
//! class Node:
//!     def __init__(self, name): self.name = name
//!     def __del__(self):
//!         global dels
//!         dels += 1
//!         print(f"__del__ {show(self)} (#{dels})")
//! class Plain:  # no __del__
//!     def __init__(self, name): self.name = name
//! class Broken:
//!     def __del__(self): raise ValueError("boom")
//! def on_death(watcher):  # a closure over an object
//!     return lambda ref: print(f"callback: {show(watcher)} saw a die")
//!
//! a = Node("a")
//! r = weakref.ref(a, on_death(Plain("w")))
//! print("id(r()) == id(a):", id(r()) == id(a))
//! Node.current = a
//! del a
//! Node.current = Node("b")  # a dies: its __del__ (found in Node's dict), then the callback
//! print("r() is None:", r() is None)
//! p, q = Node("p"), Plain("q")
//! p.peer, q.peer = q, p
//! print("referents of p:", ", ".join(show(o) for o in gc.get_referents(p) if gc.is_tracked(o)))
//! del p, q
//! print("collected:", gc.collect())
//! print("live Node instances:", sum(type(o) is Node for o in gc.get_objects()))
//! Broken()
//! del Node.current
//! class Last:  # a class and its only instance, in a cycle, left for exit
//!     __init__, __del__ = Node.__init__, Node.__del__
//! Last.it = Last("t")
//! del Last
//! print("end of program")  # at exit, t's __del__ runs
//! ```
//!
//! Run it with `cargo run --example embed`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::panic::resume_unwind;
use std::rc::Rc;

use reap::{gc_coerce, Finalize, Gc, Heap, Trace, Unraisable, UnraisableKind, Views, Weak};

/// A value of the language: immediates inline, everything with an identity on the heap.
#[derive(Clone, Trace)]
enum Value {
    None,
    Int(i64),
    Str(Rc<str>),
    Obj(Gc<dyn Object>),
}

/// What every object of the language offers (a real interpreter's type slots).
trait Object {
    fn repr(&self) -> String;
    fn dict(&self) -> Option<&Dict> {
        None
    }
    fn call(&self, _: &Interp, _: &[Value]) -> Result<Value, String> {
        Err(format!("TypeError: {} is not callable", self.repr()))
    }
}

/// A `__dict__`. Sorted, for brevity: Python's keeps insertion order.
type Dict = RefCell<BTreeMap<Rc<str>, Value>>;

fn get(dict: &Dict, key: &str) -> Option<Value> {
    dict.borrow().get(key).cloned()
}

/// `d[key] = value` (`del d[key]` with `None`). The old value is dropped once the borrow has
/// ended: dropping it may run a `__del__` that reads this very dict.
fn store(dict: &Dict, key: &str, value: Option<Value>) {
    let old = match value {
        Some(v) => dict.borrow_mut().insert(key.into(), v),
        None => dict.borrow_mut().remove(key),
    };
    drop(old);
}

/// Code of the language (here in Rust): the interpreter, the captured values, the arguments.
type Code = fn(&Interp, &[Value], &[Value]) -> Result<Value, String>;

/// A function or closure: what it captured is on the heap, traced like any other value.
#[derive(Trace)]
struct Function {
    name: String,
    #[reap(skip)] // holds no handles (and a fn pointer taking references has no `Trace` impl)
    code: Code,
    captures: Vec<Value>,
}

#[derive(Trace)]
struct Class {
    name: String,
    dict: Dict,
    live: Cell<usize>, // instances alive: `instance` counts up, `Instance::drop` down
}

#[derive(Trace)]
#[reap(finalize)]
struct Instance {
    dict: Dict,
    class: Gc<Class>,
}

impl Object for Function {
    fn repr(&self) -> String {
        format!("<function {}>", self.name)
    }
    fn call(&self, interp: &Interp, args: &[Value]) -> Result<Value, String> {
        (self.code)(interp, &self.captures, args)
    }
}

impl Object for Class {
    fn repr(&self) -> String {
        format!("<class {}>", self.name)
    }
}

impl Object for Instance {
    fn repr(&self) -> String {
        let name = get(&self.dict, "name").unwrap_or(Value::None);
        format!("<{} {}>", self.class.name, show(&name))
    }
    fn dict(&self) -> Option<&Dict> {
        Some(&self.dict)
    }
}

impl Finalize for Instance {
    /// `type(self).__del__(self)`, run by the interpreter the heap carries.
    fn finalize(this: &Gc<Self>) {
        let Some(Value::Obj(del)) = get(&this.class.dict, "__del__") else {
            return;
        };
        let interp = Gc::user_data::<Interp>(this).expect("set at start-up");
        let me = Value::Obj(gc_coerce!(this.clone() => dyn Object));
        if let Err(exception) = del.call(&interp, &[me]) {
            resume_unwind(Box::new(exception)); // to the unraisable hook, without a panic message
        }
    }

    /// Asked once, at allocation: instances of a class without `__del__` pay nothing.
    fn wants_finalizer(&self) -> bool {
        get(&self.class.dict, "__del__").is_some()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // The class may be garbage of the same cycle (`Last.it`), its value dropped first
        // by the collector: `try_deref` says so where `Deref` would panic.
        if let Ok(class) = Gc::try_deref(&self.class) {
            class.live.set(class.live.get() - 1);
        }
    }
}

/// The interpreter's state: finalizers and callbacks reach it through the heap's user data.
#[derive(Default)]
struct Interp {
    globals: Dict,
}

fn node_del(interp: &Interp, _: &[Value], args: &[Value]) -> Result<Value, String> {
    let Some(Value::Int(dels)) = get(&interp.globals, "dels") else {
        return Err("NameError: name 'dels' is not defined".into());
    };
    store(&interp.globals, "dels", Some(Value::Int(dels + 1)));
    println!("__del__ {} (#{})", show(&args[0]), dels + 1);
    Ok(Value::None)
}

fn function(heap: &Heap, name: &str, code: Code, captures: Vec<Value>) -> Gc<dyn Object> {
    let name = name.to_string();
    gc_coerce!(heap.alloc(Function { name, code, captures }) => dyn Object)
}

fn new_class(heap: &Heap, name: &str, del: Option<Code>) -> Gc<Class> {
    let (name, dict, live) = (name.to_string(), Dict::default(), Cell::new(0));
    let class = heap.alloc(Class { name, dict, live });
    if let Some(code) = del {
        let del = function(heap, &format!("{}.__del__", class.name), code, vec![]);
        store(&class.dict, "__del__", Some(Value::Obj(del)));
    }
    class
}

fn instance(heap: &Heap, class: &Gc<Class>, name: Option<&str>) -> Gc<dyn Object> {
    let (dict, class) = (Dict::default(), class.clone());
    store(&dict, "name", name.map(|n| Value::Str(n.into())));
    class.live.set(class.live.get() + 1);
    gc_coerce!(heap.alloc(Instance { dict, class }) => dyn Object)
}

fn show(v: &Value) -> String {
    match v {
        Value::None => "None".into(),
        Value::Int(n) => n.to_string(),
        Value::Str(s) => s.to_string(),
        Value::Obj(o) => o.repr(),
    }
}

/// `id(obj)`: the object's address, stable for its life.
fn id(obj: &Gc<dyn Object>) -> usize {
    Gc::as_ptr(obj).cast::<()>() as usize
}

/// The `gc` module hands out type-erased handles: back to values through one conversion per
/// Rust type of object, registered once.
fn views() -> Views<Value> {
    let mut views = Views::new();
    views
        .register(|o: Gc<Instance>| Value::Obj(gc_coerce!(o => dyn Object)))
        .register(|o: Gc<Class>| Value::Obj(gc_coerce!(o => dyn Object)))
        .register(|o: Gc<Function>| Value::Obj(gc_coerce!(o => dyn Object)));
    views
}

/// `sys.unraisablehook`. The object concerned is alive while the hook runs.
fn hook(u: &Unraisable) {
    match u.object().and_then(|o| o.downcast_ref::<Instance>()) {
        Some(inst) if u.kind == UnraisableKind::Finalizer => {
            let (name, exception) = (&inst.class.name, &u.message);
            println!("Exception ignored in: <function {name}.__del__>: {exception}");
        }
        _ => println!("{u}"),
    }
}

fn main() {
    let heap = Heap::new();
    let interp = Rc::new(Interp::default());
    heap.set_user_data(Some(interp.clone()));
    heap.set_unraisable_hook(Some(Box::new(hook)));
    heap.disable(); // gc.disable()
    store(&interp.globals, "dels", Some(Value::Int(0)));
    let node = new_class(&heap, "Node", Some(node_del));
    let plain = new_class(&heap, "Plain", None);
    let boom: Code = |_, _, _| Err("ValueError: boom".into());
    let broken = new_class(&heap, "Broken", Some(boom));
    let on_death = |watcher| {
        let code: Code = |_, captures, _| {
            println!("callback: {} saw a die", show(&captures[0]));
            Ok(Value::None)
        };
        function(&heap, "on_death.<locals>.<lambda>", code, vec![watcher])
    };

    let a = instance(&heap, &node, Some("a"));
    let lambda = on_death(Value::Obj(instance(&heap, &plain, Some("w"))));
    // The callback holds objects (the closure and what it captured): the traced form.
    let r = Weak::with_callback(&a, lambda, |lambda, r| {
        let interp = Weak::user_data::<Interp>(r).expect("set at start-up");
        if let Err(exception) = lambda.call(&interp, &[Value::None]) {
            resume_unwind(Box::new(exception));
        }
    });
    let same = r.upgrade().is_some_and(|o| id(&o) == id(&a));
    println!("id(r()) == id(a): {}", if same { "True" } else { "False" });
    store(&node.dict, "current", Some(Value::Obj(a.clone())));
    drop(a);
    let b = instance(&heap, &node, Some("b"));
    store(&node.dict, "current", Some(Value::Obj(b))); // a dies: __del__, then the callback
    let dead = r.upgrade().is_none();
    println!("r() is None: {}", if dead { "True" } else { "False" });

    let p = instance(&heap, &node, Some("p"));
    let q = instance(&heap, &plain, Some("q"));
    store(p.dict().unwrap(), "peer", Some(Value::Obj(q.clone())));
    store(q.dict().unwrap(), "peer", Some(Value::Obj(p.clone())));
    let referents = views().view_all(heap.get_referents(&p));
    let shown: Vec<String> = referents.iter().map(show).collect();
    drop(referents); // a statement's temporaries die with it
    println!("referents of p: {}", shown.join(", "));
    drop((p, q));
    println!("collected: {}", heap.collect(2));
    println!("live Node instances: {}", node.live.get());

    drop(instance(&heap, &broken, None)); // Broken(): its __del__ raises
    store(&node.dict, "current", None);
    let last = new_class(&heap, "Last", Some(node_del));
    let t = instance(&heap, &last, Some("t"));
    store(&last.dict, "it", Some(Value::Obj(t)));
    drop(last);
    println!("end of program");
    // Interpreter exit: what is owed runs now, while the interpreter is whole; then the locals
    // (the classes still held) and last the heap, which drops the user data.
    heap.shutdown();
}

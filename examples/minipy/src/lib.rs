//! # minipy
//!
//! A Python-subset interpreter on [reap](reap): its objects live and die as CPython's do
//! (reference counting, the cycle collector, weak references, finalizers), so programs about
//! object lifetime print what `python3` prints. See `examples/minipy/README.md` for the value
//! model.

#![warn(missing_docs)]

pub mod builtins;
pub mod compile;
pub mod format;
pub mod interp;
pub mod modules;
pub mod table;
pub mod value;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use reap::{Gc, Heap};

use crate::compile::Name;
use crate::interp::{Interp, Types};
use crate::value::*;

impl Interp {
    /// A new interpreter with its heap, built-in types and builtins. The heap's user data is
    /// set to the returned `Rc` (finalizers and callbacks reach the interpreter through it).
    pub fn new(path: &str) -> Rc<Interp> {
        let heap = Heap::new();
        // CPython 3.11's thresholds.
        heap.set_threshold(700, 10, 10);
        heap.set_unraisable_hook(Some(Box::new(|u: &reap::Unraisable| {
            eprintln!("Exception ignored in: {u}");
        })));
        let mk = |heap: &Heap, name: &str, base: Option<&Gc<Class>>, kind: Kind| -> Gc<Class> {
            let dict = heap.alloc(Dict::default());
            let n: Rc<str> = Rc::from(name);
            let is_exc = base.is_some_and(|b| b.is_exc) || name == "BaseException";
            let c = heap.alloc(Class {
                name: n.clone(),
                qualname: n,
                base: base.cloned(),
                dict,
                mro: RefCell::new(None),
                bases: RefCell::new(None),
                kind,
                is_exc,
                cache: Default::default(),
            });
            c.dict.t.borrow_mut().mark_class_dict();
            let mut mro = vec![Value::Class(c.clone())];
            let mut b = base.cloned();
            while let Some(k) = b {
                mro.push(Value::Class(k.clone()));
                b = k.base.clone();
            }
            *c.mro.borrow_mut() = Some(heap.alloc(Tuple {
                items: mro.into_boxed_slice(),
                born: Default::default(),
            }));
            let bases: Vec<Value> = base.into_iter().cloned().map(Value::Class).collect();
            *c.bases.borrow_mut() = Some(heap.alloc(Tuple {
                items: bases.into_boxed_slice(),
                born: Default::default(),
            }));
            c
        };
        let object = mk(&heap, "object", None, Kind::Object);
        let o = Some(&object);
        let int = mk(&heap, "int", o, Kind::Int);
        let base_exception = mk(&heap, "BaseException", o, Kind::Exception);
        let mut exceptions: HashMap<&'static str, Gc<Class>> = HashMap::new();
        exceptions.insert("BaseException", base_exception.clone());
        let tree: &[(&'static str, &'static str)] = &[
            ("Exception", "BaseException"),
            ("SystemExit", "BaseException"),
            ("KeyboardInterrupt", "BaseException"),
            ("GeneratorExit", "BaseException"),
            ("ArithmeticError", "Exception"),
            ("ZeroDivisionError", "ArithmeticError"),
            ("OverflowError", "ArithmeticError"),
            ("LookupError", "Exception"),
            ("IndexError", "LookupError"),
            ("KeyError", "LookupError"),
            ("ValueError", "Exception"),
            ("TypeError", "Exception"),
            ("AttributeError", "Exception"),
            ("NameError", "Exception"),
            ("UnboundLocalError", "NameError"),
            ("RuntimeError", "Exception"),
            ("NotImplementedError", "RuntimeError"),
            ("RecursionError", "RuntimeError"),
            ("AssertionError", "Exception"),
            ("StopIteration", "Exception"),
            ("ReferenceError", "Exception"),
            ("ImportError", "Exception"),
            ("ModuleNotFoundError", "ImportError"),
            ("SystemError", "Exception"),
            ("OSError", "Exception"),
            ("UnicodeError", "ValueError"),
        ];
        for (n, b) in tree {
            let base = exceptions[b].clone();
            exceptions.insert(n, mk(&heap, n, Some(&base), Kind::Exception));
        }
        let weakref = mk(&heap, "weakref", o, Kind::WeakRef);
        let types = Types {
            finalize: mk(&heap, "finalize", o, Kind::Finalize),
            weakmethod: mk(&heap, "WeakMethod", Some(&weakref), Kind::WeakMethod),
            type_: mk(&heap, "type", o, Kind::Type),
            bool_: mk(&heap, "bool", Some(&int), Kind::Bool),
            int,
            float: mk(&heap, "float", o, Kind::Float),
            str_: mk(&heap, "str", o, Kind::Str),
            list: mk(&heap, "list", o, Kind::List),
            tuple: mk(&heap, "tuple", o, Kind::Tuple),
            dict: mk(&heap, "dict", o, Kind::Dict),
            set: mk(&heap, "set", o, Kind::Set),
            frozenset: mk(&heap, "frozenset", o, Kind::FrozenSet),
            none: mk(&heap, "NoneType", o, Kind::NoneType),
            function: mk(&heap, "function", o, Kind::Function),
            method: mk(&heap, "method", o, Kind::Method),
            builtin_function: mk(
                &heap,
                "builtin_function_or_method",
                o,
                Kind::BuiltinFunction,
            ),
            module: mk(&heap, "module", o, Kind::Module),
            cell: mk(&heap, "cell", o, Kind::Cell),
            native: mk(&heap, "native", o, Kind::Native),
            weakref,
            range: mk(&heap, "range", o, Kind::Range),
            object,
            base_exception,
            exceptions,
        };
        let builtins = heap.alloc(Dict::default());
        let gc_callbacks = heap.alloc(List::default());
        let interp = Rc::new(Interp {
            heap,
            types,
            builtins,
            modules: RefCell::new(HashMap::new()),
            out: RefCell::new(Vec::new()),
            path: RefCell::new(path.to_string()),
            depth: Cell::new(0),
            gc_callbacks,
            weak_callbacks: RefCell::new(HashMap::new()),
            weak_hashes: RefCell::new(HashMap::new()),
            key_error: RefCell::new(None),
            proxies: RefCell::new(HashMap::new()),
            collections: Cell::new(0),
            finalizers: RefCell::new(Vec::new()),
            frame_pool: RefCell::new(Vec::new()),
        });
        let it = &interp;
        let set = |k: &str, v: Value| it.dict_set_str(&it.builtins, &Name::of(k), v);
        for (i, d) in builtins::BUILTINS.iter().enumerate() {
            if d.module.is_none() && d.name != "__init__" {
                set(d.name, Value::Builtin(BuiltinId(i as u16)));
            }
        }
        let t = &it.types;
        for c in [
            &t.object,
            &t.type_,
            &t.int,
            &t.bool_,
            &t.float,
            &t.str_,
            &t.list,
            &t.tuple,
            &t.dict,
            &t.set,
            &t.frozenset,
            &t.range,
        ] {
            set(&c.name.clone(), Value::Class(c.clone()));
        }
        for (n, c) in &t.exceptions {
            set(n, Value::Class(c.clone()));
        }
        interp.heap.set_user_data(Some(interp.clone()));
        modules::install_gc_callbacks(&interp);
        interp
    }

    /// The interpreter-exit sequence, in CPython's order: pending `weakref.finalize` calls
    /// with `atexit=True` (newest first); a collection if the collector is enabled; then
    /// `__main__` is let go and collected with everything only it reaches (no `gc.callbacks`;
    /// every `__del__` sees the globals intact); globals that something still holds are
    /// cleared in insertion order; then the other modules, then reap's `Heap::shutdown`.
    pub fn exit(&self, globals: Gc<Dict>) {
        loop {
            let last = self.finalizers.borrow().last().cloned();
            let Some((id, v)) = last else { break };
            let fobj = match &v {
                Value::Native(n) => Some(n.clone()),
                Value::Instance(i) => match &i.base {
                    Some(Value::Native(n)) => Some(n.clone()),
                    _ => None,
                },
                _ => None,
            };
            if let Some(n) = fobj {
                if let NativeKind::Finalize(f) = &n.kind {
                    if f.f.alive() {
                        if f.atexit.get() {
                            f.f.call();
                        } else {
                            let d = f.f.detach();
                            drop(d);
                        }
                    }
                }
            }
            let old = {
                let mut reg = self.finalizers.borrow_mut();
                reg.iter()
                    .position(|(i, _)| *i == id)
                    .map(|p| reg.remove(p))
            };
            drop(old);
            drop(v);
        }
        // CPython's `finalize_modules` takes the modules out of `sys.modules` and collects
        // (without `gc.callbacks`) before clearing any module dict: `__main__`, its dict and
        // everything only they reach are then one garbage set (classes and functions make the
        // dict cyclic), whose finalizers all run while the globals are still intact.
        // First, as `Py_FinalizeEx` does, a plain collection if the collector is enabled
        // (`gc.callbacks` run for it).
        if self.heap.is_enabled() {
            self.heap.collect(2);
        }
        let callbacks = std::mem::take(&mut *self.gc_callbacks.items.borrow_mut());
        drop(callbacks);
        let main = self.modules.borrow_mut().remove("__main__");
        drop(main);
        let survivor = reap::Weak::new(&globals);
        drop(globals);
        self.heap.collect(2);
        // Whatever still holds the globals (a registry, `gc.garbage`) keeps them: clear them
        // as a module dict is cleared.
        let Some(globals) = survivor.upgrade() else {
            return self.finish_exit();
        };
        drop(survivor);
        let keys = globals.t.borrow().keys();
        for k in keys {
            if let Value::Str(s) = &k {
                if &**s == "__builtins__" || &**s == "__name__" {
                    continue;
                }
                let n = Name::of(s);
                let old = {
                    let mut t = globals.t.borrow_mut();
                    t.find_str(n.h, s)
                        .map(|slot| t.set_value(slot, Value::None))
                };
                drop(old);
            }
        }
        drop(globals);
        self.finish_exit();
    }

    /// The end of `exit`: the other modules' dicts cleared, then reap's shutdown.
    fn finish_exit(&self) {
        let mods: Vec<Value> = self.modules.borrow().values().cloned().collect();
        for m in mods {
            if let Value::Module(m) = m {
                let old = m.dict.t.borrow_mut().take_all();
                drop(old);
            }
        }
        let old = std::mem::take(&mut *self.gc_callbacks.items.borrow_mut());
        drop(old);
        self.heap.shutdown();
        self.flush();
    }
}

/// Runs a program; returns the process exit status.
pub fn run_source(path: &str, source: &str) -> i32 {
    let code = match compile::compile_module(source, path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("  File \"{path}\", line {}\n{}", e.line, e.msg);
            return 1;
        }
    };
    let it = Interp::new(path);
    let globals = it.heap.alloc(Dict::default());
    it.dict_set_str(&globals, &Name::of("__name__"), Value::str("__main__"));
    let main = Value::Module(it.heap.alloc(Module {
        name: Rc::from("__main__"),
        dict: globals.clone(),
    }));
    it.modules.borrow_mut().insert(Rc::from("__main__"), main);
    let mut status = 0;
    if let Err(e) = it.run_module(&code, &globals) {
        let exit = &it.types.exceptions["SystemExit"];
        if interp::is_subclass(&e.0.class, exit) {
            let args =
                e.0.exc
                    .borrow()
                    .as_ref()
                    .map(|s| s.args.clone())
                    .unwrap_or_default();
            status = match args.first() {
                Some(Value::Int(i)) => *i as i32,
                Some(Value::None) | None => 0,
                Some(Value::Str(s)) if s.is_empty() => 0,
                Some(v) => {
                    let s = it.to_str(v).unwrap_or_default();
                    it.write_err(&format!("{s}\n"));
                    1
                }
            };
        } else {
            let s = it.format_exc(&e);
            it.write_err(&s);
            status = 1;
        }
        drop(e);
    }
    it.exit(globals);
    it.flush();
    status
}

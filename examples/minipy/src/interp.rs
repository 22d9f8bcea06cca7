//! The evaluator: walks the compiled IR ([`crate::compile`]) over reap heap objects.
//!
//! Re-entrancy rule (docs/EMBEDDING.md, section 3): dropping a value can run `__del__` and
//! weak-reference callbacks, and allocating can start a collection that runs them. So no
//! `RefCell` borrow is held while a value is dropped or code is called: old values are taken
//! out, the borrow ends, then they are dropped.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::Write;
use std::rc::Rc;

use reap::{Finalize, Gc, Heap, Weak};

use crate::compile::{
    Args, BinOp, CmpOp, Code, CompKind, Elt, Expr, FPart, FuncDef, ScopeKind, Stmt, StmtKind,
    Target, UnOp,
};
use crate::table::Table;
use crate::value::*;

/// A Python exception in flight: the exception instance.
pub struct Exc(pub Gc<Instance>);

/// Result of Python-level operations.
pub type PyResult<T = Value> = Result<T, Exc>;

/// How a block of statements ended.
pub enum Flow {
    /// Fell off the end.
    Normal,
    /// `break`
    Break,
    /// `continue`
    Continue,
    /// `return v`
    Return(Value),
}

/// A running scope's variables. Lives on the Rust stack: its values are roots, as CPython's
/// frames (not heap objects until a traceback needs them: then the locals move into the
/// exception's traceback entry).
pub struct Frame<'c> {
    /// The code.
    pub code: &'c Code,
    /// Local slots.
    pub locals: Vec<Option<Value>>,
    /// Own cells, then free cells.
    pub cells: Vec<Gc<CellObj>>,
    /// Module globals.
    pub globals: Gc<Dict>,
    /// Class body namespace.
    pub ns: Option<Gc<Dict>>,
}

/// Built-in classes.
#[allow(missing_docs)]
pub struct Types {
    pub object: Gc<Class>,
    pub type_: Gc<Class>,
    pub int: Gc<Class>,
    pub bool_: Gc<Class>,
    pub float: Gc<Class>,
    pub str_: Gc<Class>,
    pub list: Gc<Class>,
    pub tuple: Gc<Class>,
    pub dict: Gc<Class>,
    pub set: Gc<Class>,
    pub frozenset: Gc<Class>,
    pub none: Gc<Class>,
    pub function: Gc<Class>,
    pub method: Gc<Class>,
    pub builtin_function: Gc<Class>,
    pub module: Gc<Class>,
    pub cell: Gc<Class>,
    pub native: Gc<Class>,
    pub weakref: Gc<Class>,
    pub range: Gc<Class>,
    pub finalize: Gc<Class>,
    pub weakmethod: Gc<Class>,
    pub base_exception: Gc<Class>,
    pub exceptions: HashMap<&'static str, Gc<Class>>,
}

/// The interpreter. The heap's user data is an `Rc` to it, so `__del__` and weak-reference
/// callbacks reach it from anywhere (docs/EMBEDDING.md, section 5).
pub struct Interp {
    /// The heap every object lives on.
    pub heap: Heap,
    /// Built-in classes.
    pub types: Types,
    /// The builtins namespace.
    pub builtins: Gc<Dict>,
    /// Imported modules.
    pub modules: RefCell<HashMap<Rc<str>, Value>>,
    /// Buffered stdout.
    pub out: RefCell<Vec<u8>>,
    /// Script path (for tracebacks).
    pub path: RefCell<String>,
    /// Recursion depth.
    pub depth: Cell<usize>,
    /// `gc.callbacks`
    pub gc_callbacks: Gc<List>,
    /// `weakref.ref(o, cb).__callback__`, by weak-reference address. API: reap has no getter
    /// for a weak reference's callback state yet (`Weak::callback_state` is coming).
    pub weak_callbacks: RefCell<HashMap<usize, Value>>,
    /// Hashes of weak references, by address, computed while the referent lived (a weak
    /// reference keeps its hash after death). API: `Weak::try_hash` needs `T: Hash`, and a
    /// Python object's hash is the interpreter's business.
    pub weak_hashes: RefCell<HashMap<usize, u64>>,
    /// An exception raised by a key's `__hash__`/`__eq__` inside a weak-keyed map operation.
    pub key_error: RefCell<Option<Exc>>,
    /// The shared callback-less proxy of each object, by the object's address.
    pub proxies: RefCell<HashMap<usize, Weak<Native>>>,
    /// Collections so far (for CPython's untracking of tuples of atoms in `gc.is_tracked`).
    pub collections: Cell<u64>,
    /// The `weakref.finalize` objects, kept alive while pending as CPython's registry keeps
    /// them; at exit the `atexit=True` ones run (newest first) and the others are detached.
    /// API: reap's `Finalizer` has no atexit flag yet.
    pub finalizers: RefCell<Vec<(u64, Value)>>,
    /// Emptied local-slot vectors of returned frames, reused by the next calls (saves an
    /// allocation per call).
    pub frame_pool: RefCell<Vec<Vec<Option<Value>>>>,
}

impl Interp {
    // ------------------------------------------------------------ errors

    /// Makes an exception of a built-in class.
    pub fn exc(&self, class: &str, msg: impl Into<String>) -> Exc {
        let cls = self
            .types
            .exceptions
            .get(class)
            .unwrap_or(&self.types.base_exception)
            .clone();
        let msg: String = msg.into();
        let args = vec![Value::Str(Rc::from(msg.as_str()))];
        Exc(self.new_exception(cls, args))
    }

    /// A new exception instance.
    pub fn new_exception(&self, cls: Gc<Class>, args: Vec<Value>) -> Gc<Instance> {
        let st = ExcState {
            args,
            ..Default::default()
        };
        self.heap.alloc(Instance {
            class: cls,
            dict: RefCell::new(InstDict::Inline(Table::default())),
            exc: RefCell::new(Some(Box::new(st))),
            base: None,
        })
    }

    /// `TypeError`
    pub fn type_error(&self, msg: impl Into<String>) -> Exc {
        self.exc("TypeError", msg)
    }

    fn set_line(e: &Exc, line: u32) {
        if let Some(st) = e.0.exc.borrow_mut().as_mut() {
            if st.pending_line.is_none() {
                st.pending_line = Some(line);
            }
        }
    }

    fn push_tb(e: &Exc, name: &Rc<str>, locals: Vec<Option<Value>>) {
        let mut b = e.0.exc.borrow_mut();
        if let Some(st) = b.as_mut() {
            let line = st.pending_line.take().unwrap_or(0);
            st.tb.push(TbEntry {
                name: name.clone(),
                line,
                locals,
            });
        }
    }

    // ------------------------------------------------------------ output

    /// Writes to stdout (buffered).
    pub fn write_out(&self, s: &str) {
        let mut o = self.out.borrow_mut();
        o.extend_from_slice(s.as_bytes());
        if o.len() > 1 << 16 {
            let _ = std::io::stdout().write_all(&o);
            o.clear();
        }
    }

    /// Flushes stdout.
    pub fn flush(&self) {
        let data = std::mem::take(&mut *self.out.borrow_mut());
        let mut so = std::io::stdout();
        let _ = so.write_all(&data);
        let _ = so.flush();
    }

    /// Writes to stderr (flushing stdout first, to keep the interleaving readable).
    pub fn write_err(&self, s: &str) {
        self.flush();
        let _ = std::io::stderr().write_all(s.as_bytes());
    }

    /// Formats a traceback and the exception, as CPython prints it.
    pub fn format_exc(&self, e: &Exc) -> String {
        let mut s = String::new();
        let path = self.path.borrow().clone();
        let entries: Vec<(Rc<str>, u32)> =
            e.0.exc
                .borrow()
                .as_ref()
                .map(|st| st.tb.iter().map(|t| (t.name.clone(), t.line)).collect())
                .unwrap_or_default();
        if !entries.is_empty() {
            s.push_str("Traceback (most recent call last):\n");
            for (name, line) in entries.iter().rev() {
                s.push_str(&format!("  File \"{path}\", line {line}, in {name}\n"));
            }
        }
        s.push_str(&self.exc_line(e));
        s.push('\n');
        s
    }

    /// `ValueError: msg`
    pub fn exc_line(&self, e: &Exc) -> String {
        let name = e.0.class.name.clone();
        let msg = self
            .to_str(&Value::Instance(e.0.clone()))
            .unwrap_or_default();
        if msg.is_empty() {
            name.to_string()
        } else {
            format!("{name}: {msg}")
        }
    }

    /// Reports an exception nobody can catch (from `__del__`, a callback), as
    /// `sys.unraisablehook` does.
    pub fn unraisable(&self, what: &str, e: Exc) {
        let mut s = format!("Exception ignored in: {what}\n");
        s.push_str(&self.format_exc(&e));
        self.write_err(&s);
    }

    // ------------------------------------------------------------ running code

    /// Runs a module's code with these globals.
    pub fn run_module(&self, code: &Code, globals: &Gc<Dict>) -> PyResult<()> {
        let mut frame = Frame {
            code,
            locals: Vec::new(),
            cells: Vec::new(),
            globals: globals.clone(),
            ns: None,
        };
        match self.exec_block(&mut frame, &code.body) {
            Ok(_) => Ok(()),
            Err(e) => {
                Self::push_tb(&e, &code.name, Vec::new());
                Err(e)
            }
        }
    }

    /// Runs statements.
    pub fn exec_block(&self, f: &mut Frame, body: &[Stmt]) -> PyResult<Flow> {
        for s in body {
            match self.exec(f, s) {
                Ok(Flow::Normal) => {}
                Ok(other) => return Ok(other),
                Err(e) => {
                    Self::set_line(&e, s.line);
                    return Err(e);
                }
            }
        }
        Ok(Flow::Normal)
    }

    fn exec(&self, f: &mut Frame, s: &Stmt) -> PyResult<Flow> {
        match &s.kind {
            StmtKind::Expr(e) => {
                let v = self.eval(f, e)?;
                drop(v);
            }
            StmtKind::Assign(targets, e) => {
                let v = self.eval(f, e)?;
                let n = targets.len();
                for (i, t) in targets.iter().enumerate() {
                    if i + 1 == n {
                        return self.assign(f, t, v).map(|_| Flow::Normal);
                    }
                    self.assign(f, t, v.clone())?;
                }
            }
            StmtKind::AugAssign(t, op, e) => self.aug_assign(f, t, *op, e)?,
            StmtKind::Del(ts) => {
                for t in ts {
                    self.delete(f, t)?;
                }
            }
            StmtKind::If(c, a, b) => {
                let v = self.eval(f, c)?;
                let t = self.truthy(&v)?;
                drop(v);
                return self.exec_block(f, if t { a } else { b });
            }
            StmtKind::While(c, body, orelse) => loop {
                let v = self.eval(f, c)?;
                let t = self.truthy(&v)?;
                drop(v);
                if !t {
                    return self.exec_block(f, orelse);
                }
                match self.exec_block(f, body)? {
                    Flow::Break => break,
                    Flow::Return(v) => return Ok(Flow::Return(v)),
                    _ => {}
                }
            },
            StmtKind::For(t, it, body, orelse) => {
                let iterable = self.eval(f, it)?;
                let mut iter = self.iter(&iterable)?;
                drop(iterable);
                loop {
                    let Some(v) = self.next(&mut iter)? else {
                        drop(iter);
                        return self.exec_block(f, orelse);
                    };
                    self.assign(f, t, v)?;
                    match self.exec_block(f, body)? {
                        Flow::Break => break,
                        Flow::Return(v) => return Ok(Flow::Return(v)),
                        _ => {}
                    }
                }
            }
            StmtKind::Break => return Ok(Flow::Break),
            StmtKind::Continue => return Ok(Flow::Continue),
            StmtKind::Pass => {}
            StmtKind::Return(e) => {
                let v = match e {
                    Some(e) => self.eval(f, e)?,
                    None => Value::None,
                };
                return Ok(Flow::Return(v));
            }
            StmtKind::Raise(e, cause) => return Err(self.raise(f, e.as_ref(), cause.as_ref())),
            StmtKind::Try(body, handlers, orelse, finally) => {
                return self.exec_try(f, body, handlers, orelse, finally)
            }
            StmtKind::FuncDef(def, decorators, target) => {
                let mut decs = Vec::new();
                for d in decorators {
                    decs.push(self.eval(f, d)?);
                }
                let mut func = self.make_function(f, def)?;
                for d in decs.iter().rev() {
                    func = self.call(d, &[func], &[])?;
                }
                drop(decs);
                self.assign(f, target, func)?;
            }
            StmtKind::ClassDef {
                name,
                bases,
                code,
                closure,
                decorators,
                target,
            } => {
                let mut decs = Vec::new();
                for d in decorators {
                    decs.push(self.eval(f, d)?);
                }
                let mut bs = Vec::new();
                for b in bases {
                    bs.push(self.eval(f, b)?);
                }
                let cells: Vec<Gc<CellObj>> = closure
                    .iter()
                    .map(|&i| f.cells[i as usize].clone())
                    .collect();
                let mut cls = self.build_class(name, bs, code, cells, &f.globals)?;
                for d in decs.iter().rev() {
                    cls = self.call(d, &[cls], &[])?;
                }
                self.assign(f, target, cls)?;
            }
            StmtKind::Import(m, t) => {
                let module = self.import(m)?;
                self.assign(f, t, module)?;
            }
            StmtKind::ImportFrom(m, names) => {
                let module = self.import(m)?;
                for (n, t) in names {
                    let v = self.getattr(&module, n)?;
                    self.assign(f, t, v)?;
                }
            }
            StmtKind::Assert(c, msg) => {
                let v = self.eval(f, c)?;
                if !self.truthy(&v)? {
                    let args = match msg {
                        Some(m) => vec![self.eval(f, m)?],
                        None => vec![],
                    };
                    let cls = self.types.exceptions["AssertionError"].clone();
                    return Err(Exc(self.new_exception(cls, args)));
                }
            }
            StmtKind::With(e, t, body) => {
                let mgr = self.eval(f, e)?;
                let enter = self.call_method(&mgr, "__enter__", &[])?;
                match t {
                    Some(t) => self.assign(f, t, enter)?,
                    None => drop(enter),
                }
                let r = self.exec_block(f, body);
                match r {
                    Ok(flow) => {
                        self.call_method(
                            &mgr,
                            "__exit__",
                            &[Value::None, Value::None, Value::None],
                        )?;
                        return Ok(flow);
                    }
                    Err(e) => {
                        let ev = Value::Instance(e.0.clone());
                        let cls = Value::Class(e.0.class.clone());
                        let sup = self.call_method(&mgr, "__exit__", &[cls, ev, Value::None])?;
                        if self.truthy(&sup)? {
                            return Ok(Flow::Normal);
                        }
                        return Err(e);
                    }
                }
            }
            StmtKind::Comp {
                kind,
                gens,
                elt,
                val,
            } => {
                let out = match kind {
                    CompKind::List | CompKind::Gen => Value::List(self.heap.alloc(List::default())),
                    CompKind::Set => Value::Set(self.heap.alloc(Set::default())),
                    CompKind::Dict => Value::Dict(self.heap.alloc(Dict::default())),
                };
                self.comp_loop(f, gens, 0, elt, val.as_ref(), &out)?;
                let out = if *kind == CompKind::Gen {
                    let Value::List(l) = out else { unreachable!() };
                    let items = std::mem::take(&mut *l.items.borrow_mut());
                    self.new_native(NativeKind::Iter(RefCell::new(IterState::Vec(items, 0))))
                } else {
                    out
                };
                return Ok(Flow::Return(out));
            }
        }
        Ok(Flow::Normal)
    }

    fn comp_loop(
        &self,
        f: &mut Frame,
        gens: &[crate::compile::CompGen],
        i: usize,
        elt: &Expr,
        val: Option<&Expr>,
        out: &Value,
    ) -> PyResult<()> {
        let g = &gens[i];
        let iterable = self.eval(f, &g.iter)?;
        let mut it = self.iter(&iterable)?;
        drop(iterable);
        'outer: while let Some(v) = self.next(&mut it)? {
            self.assign(f, &g.target, v)?;
            for c in &g.ifs {
                let cv = self.eval(f, c)?;
                if !self.truthy(&cv)? {
                    continue 'outer;
                }
            }
            if i + 1 < gens.len() {
                self.comp_loop(f, gens, i + 1, elt, val, out)?;
                continue;
            }
            match out {
                Value::List(l) => {
                    let v = self.eval(f, elt)?;
                    l.items.borrow_mut().push(v);
                }
                Value::Set(s) => {
                    let v = self.eval(f, elt)?;
                    self.set_add(s, v)?;
                }
                Value::Dict(d) => {
                    let k = self.eval(f, elt)?;
                    let v = self.eval(f, val.expect("dict comprehension value"))?;
                    self.dict_set(d, k, v)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn raise(&self, f: &mut Frame, e: Option<&Expr>, cause: Option<&Expr>) -> Exc {
        let Some(e) = e else {
            return self.exc("RuntimeError", "No active exception to reraise");
        };
        let v = match self.eval(f, e) {
            Ok(v) => v,
            Err(e) => return e,
        };
        let exc = match self.to_exception(v) {
            Ok(x) => x,
            Err(e) => return e,
        };
        if let Some(c) = cause {
            match self.eval(f, c) {
                Ok(cv) => {
                    if let Some(st) = exc.0.exc.borrow_mut().as_mut() {
                        st.cause = Some(cv);
                    }
                }
                Err(e) => return e,
            }
        }
        exc
    }

    /// An exception from a raised value (a class is instantiated).
    pub fn to_exception(&self, v: Value) -> PyResult<Exc> {
        match v {
            Value::Instance(i) if i.class.is_exc => Ok(Exc(i)),
            Value::Class(c) if c.is_exc => match self.call(&Value::Class(c), &[], &[])? {
                Value::Instance(i) => Ok(Exc(i)),
                _ => Err(self.type_error("exceptions must derive from BaseException")),
            },
            _ => Err(self.type_error("exceptions must derive from BaseException")),
        }
    }

    fn exec_try(
        &self,
        f: &mut Frame,
        body: &[Stmt],
        handlers: &[crate::compile::Handler],
        orelse: &[Stmt],
        finally: &[Stmt],
    ) -> PyResult<Flow> {
        let r = match self.exec_block(f, body) {
            Ok(Flow::Normal) => self.exec_block(f, orelse),
            Ok(other) => Ok(other),
            Err(e) => {
                let mut result = Err(e);
                if let Err(e) = &result {
                    let exc = e.0.clone();
                    for h in handlers {
                        let matches = match &h.typ {
                            None => true,
                            Some(t) => {
                                let tv = self.eval(f, t)?;
                                self.exc_matches(&exc, &tv)
                            }
                        };
                        if matches {
                            let Err(e) = std::mem::replace(&mut result, Ok(Flow::Normal)) else {
                                unreachable!()
                            };
                            // The traceback stays with the exception object (CPython clears
                            // the frame's exception state at the end of the handler).
                            drop(e);
                            if let Some(n) = &h.name {
                                self.assign(f, n, Value::Instance(exc.clone()))?;
                            }
                            drop(exc);
                            let r = self.exec_block(f, &h.body);
                            if let Some(n) = &h.name {
                                // `except E as e` deletes `e` at the end of the handler.
                                let _ = self.delete(f, n);
                            }
                            result = r;
                            break;
                        }
                    }
                }
                result
            }
        };
        if finally.is_empty() {
            return r;
        }
        match self.exec_block(f, finally)? {
            Flow::Normal => r,
            other => Ok(other),
        }
    }

    /// Whether an exception matches an `except` clause's class (or tuple of classes).
    pub fn exc_matches(&self, exc: &Gc<Instance>, t: &Value) -> bool {
        match t {
            Value::Class(c) => is_subclass(&exc.class, c),
            Value::Tuple(t) => t.items.iter().any(|x| self.exc_matches(exc, x)),
            _ => false,
        }
    }

    // ------------------------------------------------------------ assignment

    /// Stores `v` into a target.
    pub fn assign(&self, f: &mut Frame, t: &Target, v: Value) -> PyResult<()> {
        match t {
            Target::Local(i) => {
                let old = f.locals[*i as usize].replace(v);
                drop(old);
            }
            Target::Cell(i) => {
                let c = &f.cells[*i as usize];
                let old = c.value.borrow_mut().replace(v);
                drop(old);
            }
            Target::Global(n) => {
                let g = f.globals.clone();
                self.dict_set_str(&g, n, v);
            }
            Target::ClassStore(n) => {
                let ns = f.ns.clone().expect("class namespace");
                self.dict_set_str(&ns, n, v);
            }
            Target::Attr(o, n) => {
                let o = self.eval(f, o)?;
                self.setattr(&o, n, v)?;
            }
            Target::Subscript(o, i) => {
                let o = self.eval(f, o)?;
                let i = self.eval(f, i)?;
                self.setitem(&o, i, v)?;
            }
            Target::Seq(ts, star) => {
                // A small tuple unpacked exactly: no vector (same order of effects: the items
                // are taken, the tuple released, then the targets assigned).
                if let (None, Value::Tuple(tup)) = (star, &v) {
                    if tup.items.len() == ts.len() && ts.len() <= 4 {
                        let mut buf: [Option<Value>; 4] = Default::default();
                        for (b, x) in buf.iter_mut().zip(tup.items.iter()) {
                            *b = Some(x.clone());
                        }
                        drop(v);
                        for (t, b) in ts.iter().zip(buf.iter_mut()) {
                            if let Some(x) = b.take() {
                                self.assign(f, t, x)?;
                            }
                        }
                        return Ok(());
                    }
                }
                let items = self.collect(&v)?;
                drop(v);
                match star {
                    None => {
                        if items.len() != ts.len() {
                            return Err(self.exc(
                                "ValueError",
                                if items.len() > ts.len() {
                                    format!("too many values to unpack (expected {})", ts.len())
                                } else {
                                    format!(
                                        "not enough values to unpack (expected {}, got {})",
                                        ts.len(),
                                        items.len()
                                    )
                                },
                            ));
                        }
                        for (t, v) in ts.iter().zip(items) {
                            self.assign(f, t, v)?;
                        }
                    }
                    Some(si) => {
                        let after = ts.len() - si - 1;
                        if items.len() < ts.len() - 1 {
                            return Err(self.exc("ValueError", "not enough values to unpack"));
                        }
                        let mut items = items;
                        let tail = items.split_off(items.len() - after);
                        let mid = items.split_off(*si);
                        for (t, v) in ts[..*si].iter().zip(items) {
                            self.assign(f, t, v)?;
                        }
                        let l = self.new_list(mid);
                        self.assign(f, &ts[*si], l)?;
                        for (t, v) in ts[si + 1..].iter().zip(tail) {
                            self.assign(f, t, v)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn aug_assign(&self, f: &mut Frame, t: &Target, op: BinOp, e: &Expr) -> PyResult<()> {
        match t {
            Target::Attr(o, n) => {
                let o = self.eval(f, o)?;
                let cur = self.getattr(&o, n)?;
                let r = self.eval(f, e)?;
                let nv = self.inplace(op, cur, &r)?;
                self.setattr(&o, n, nv)
            }
            Target::Subscript(o, i) => {
                let o = self.eval(f, o)?;
                let i = self.eval(f, i)?;
                let cur = self.getitem(&o, &i)?;
                let r = self.eval(f, e)?;
                let nv = self.inplace(op, cur, &r)?;
                self.setitem(&o, i, nv)
            }
            Target::Local(i) => {
                let cur = match &f.locals[*i as usize] {
                    Some(v) => v.clone(),
                    None => return Err(self.unbound_local(f, *i)),
                };
                let r = self.eval(f, e)?;
                let nv = self.inplace(op, cur, &r)?;
                drop(r);
                self.assign(f, t, nv)
            }
            _ => {
                let cur = self.eval(f, &target_as_expr(t))?;
                let r = self.eval(f, e)?;
                let nv = self.inplace(op, cur, &r)?;
                drop(r);
                self.assign(f, t, nv)
            }
        }
    }

    fn inplace(&self, op: BinOp, cur: Value, r: &Value) -> PyResult<Value> {
        if let Some(v) = int_fast(op, &cur, r) {
            return Ok(v);
        }
        match (&cur, op) {
            (Value::List(l), BinOp::Add) => {
                let items = self.collect(r)?;
                l.items.borrow_mut().extend(items);
                Ok(cur)
            }
            (Value::Instance(_), _) => {
                let name = format!("__i{}__", &binop_name(op)[2..binop_name(op).len() - 2]);
                if let Some(m) = self.lookup_special(&cur, &name) {
                    let v = self.call_with_self(&m, &cur, std::slice::from_ref(r))?;
                    if !matches!(&v, Value::Builtin(b) if *b == crate::builtins::NOT_IMPLEMENTED) {
                        return Ok(v);
                    }
                }
                self.binop(op, &cur, r)
            }
            _ => self.binop(op, &cur, r),
        }
    }

    fn delete(&self, f: &mut Frame, t: &Target) -> PyResult<()> {
        match t {
            Target::Local(i) => {
                let old = f.locals[*i as usize].take();
                if old.is_none() {
                    return Err(self.unbound_local(f, *i));
                }
                drop(old);
            }
            Target::Cell(i) => {
                let old = f.cells[*i as usize].value.borrow_mut().take();
                drop(old);
            }
            Target::Global(n) => {
                let g = f.globals.clone();
                if !self.dict_del_str(&g, n) {
                    return Err(self.exc("NameError", format!("name '{}' is not defined", n.s)));
                }
            }
            Target::ClassStore(n) => {
                let ns = f.ns.clone().expect("class namespace");
                if !self.dict_del_str(&ns, n) {
                    return Err(self.exc("NameError", format!("name '{}' is not defined", n.s)));
                }
            }
            Target::Attr(o, n) => {
                let o = self.eval(f, o)?;
                self.delattr(&o, n)?;
            }
            Target::Subscript(o, i) => {
                let o = self.eval(f, o)?;
                let i = self.eval(f, i)?;
                self.delitem(&o, &i)?;
            }
            Target::Seq(ts, _) => {
                for t in ts {
                    self.delete(f, t)?;
                }
            }
        }
        Ok(())
    }

    fn unbound_local(&self, f: &Frame, i: u32) -> Exc {
        let n = &f.code.local_names[i as usize];
        self.exc(
            "UnboundLocalError",
            format!("cannot access local variable '{n}' where it is not associated with a value"),
        )
    }

    // ------------------------------------------------------------ expressions

    /// Evaluates an expression.
    pub fn eval(&self, f: &mut Frame, e: &Expr) -> PyResult {
        match e {
            Expr::Const(v) => Ok(v.clone()),
            Expr::Local(i) => match &f.locals[*i as usize] {
                Some(v) => Ok(v.clone()),
                None => Err(self.unbound_local(f, *i)),
            },
            Expr::Cell(i) => match &*f.cells[*i as usize].value.borrow() {
                Some(v) => Ok(v.clone()),
                None => Err(self.exc(
                    "NameError",
                    format!(
                        "cannot access free variable '{}' where it is not associated with a value in enclosing scope",
                        f.code.cell_names[*i as usize]
                    ),
                )),
            },
            Expr::Global(n) => self.load_global(&f.globals, n),
            Expr::ClassLoad(n, cell) => {
                let ns = f.ns.clone().expect("class namespace");
                if let Some(v) = self.dict_get_str(&ns, n) {
                    return Ok(v);
                }
                if let Some(c) = cell {
                    if let Some(v) = &*f.cells[*c as usize].value.borrow() {
                        return Ok(v.clone());
                    }
                }
                self.load_global(&f.globals, n)
            }
            Expr::Attr(o, n) => {
                let o = self.eval(f, o)?;
                self.getattr(&o, n)
            }
            Expr::Subscript(o, i) => {
                let o = self.eval(f, o)?;
                let i = self.eval(f, i)?;
                self.getitem(&o, &i)
            }
            Expr::Slice(a, b, c) => {
                let mut g = |x: &Option<Box<Expr>>| -> PyResult {
                    match x {
                        Some(x) => self.eval(f, x),
                        None => Ok(Value::None),
                    }
                };
                let (a, b, c) = (g(a)?, g(b)?, g(c)?);
                Ok(self.new_native(NativeKind::Slice(a, b, c)))
            }
            Expr::Call(func, args, _) => {
                let fv = self.eval(f, func)?;
                if let Value::Function(fun) = &fv {
                    if args.simple && Self::simple_arity(fun, args.pos.len()) {
                        let locals = self.eval_into_locals(f, None, &args.pos)?;
                        return self.enter(fun, locals);
                    }
                }
                let (pos, kw) = self.eval_args(f, args)?;
                self.call_owned(&fv, None, pos, kw)
            }
            Expr::CallMethod(o, n, args, _) => {
                let ov = self.eval(f, o)?;
                self.eval_call_method(f, ov, n, args)
            }
            Expr::Super(cell, first) => {
                let cls = match &*f.cells[*cell as usize].value.borrow() {
                    Some(Value::Class(c)) => c.clone(),
                    _ => return Err(self.exc("RuntimeError", "super(): __class__ cell not found")),
                };
                let obj = self.eval(f, first)?;
                Ok(self.new_native(NativeKind::Super(cls, obj)))
            }
            Expr::Bin(op, a, b) => {
                let a = self.eval(f, a)?;
                let b = self.eval(f, b)?;
                if let Some(v) = int_fast(*op, &a, &b) {
                    return Ok(v);
                }
                self.binop(*op, &a, &b)
            }
            Expr::Unary(op, a) => {
                let a = self.eval(f, a)?;
                self.unary(*op, &a)
            }
            Expr::Not(a) => {
                let a = self.eval(f, a)?;
                Ok(Value::Bool(!self.truthy(&a)?))
            }
            Expr::And(a, b) => {
                let a = self.eval(f, a)?;
                if !self.truthy(&a)? {
                    return Ok(a);
                }
                drop(a);
                self.eval(f, b)
            }
            Expr::Or(a, b) => {
                let a = self.eval(f, a)?;
                if self.truthy(&a)? {
                    return Ok(a);
                }
                drop(a);
                self.eval(f, b)
            }
            Expr::Compare(l, rest) => {
                let mut left = self.eval(f, l)?;
                let n = rest.len();
                for (i, (op, r)) in rest.iter().enumerate() {
                    let right = self.eval(f, r)?;
                    let ok = match cmp_fast(*op, &left, &right) {
                        Some(b) => b,
                        None => self.compare(*op, &left, &right)?,
                    };
                    if !ok {
                        return Ok(Value::Bool(false));
                    }
                    if i + 1 == n {
                        break;
                    }
                    left = right;
                }
                Ok(Value::Bool(true))
            }
            Expr::IfExp(c, a, b) => {
                let cv = self.eval(f, c)?;
                if self.truthy(&cv)? {
                    self.eval(f, a)
                } else {
                    self.eval(f, b)
                }
            }
            Expr::List(elts) => {
                let items = self.eval_elts(f, elts)?;
                Ok(self.new_list(items))
            }
            Expr::Tuple(elts) => {
                let items = self.eval_elts(f, elts)?;
                Ok(self.new_tuple(items))
            }
            Expr::Set(elts) => {
                let items = self.eval_elts(f, elts)?;
                let s = self.heap.alloc(Set::default());
                for v in items {
                    self.set_add(&s, v)?;
                }
                Ok(Value::Set(s))
            }
            Expr::Dict(items) => {
                let mut kv = Vec::with_capacity(items.len());
                for (k, v) in items {
                    match k {
                        Some(k) => {
                            let k = self.eval(f, k)?;
                            let v = self.eval(f, v)?;
                            kv.push((Some(k), v));
                        }
                        None => kv.push((None, self.eval(f, v)?)),
                    }
                }
                let d = self.heap.alloc(Dict::default());
                for (k, v) in kv {
                    match k {
                        Some(k) => self.dict_set(&d, k, v)?,
                        None => {
                            for (k, v) in self.items_of(&v)? {
                                self.dict_set(&d, k, v)?;
                            }
                        }
                    }
                }
                Ok(Value::Dict(d))
            }
            Expr::Comp(c) => {
                let iterable = self.eval(f, &c.iter)?;
                let cells: Vec<Gc<CellObj>> =
                    c.closure.iter().map(|&i| f.cells[i as usize].clone()).collect();
                let globals = f.globals.clone();
                self.run_code(&c.code, &globals, vec![Some(iterable)], cells)
            }
            Expr::Lambda(def) => self.make_function(f, def),
            Expr::FStr(parts) => {
                let s = self.fstring(f, parts)?;
                Ok(Value::Str(Rc::from(s.as_str())))
            }
            Expr::Walrus(t, v) => {
                let v = self.eval(f, v)?;
                self.assign(f, t, v.clone())?;
                Ok(v)
            }
        }
    }

    fn fstring(&self, f: &mut Frame, parts: &[FPart]) -> PyResult<String> {
        let mut s = String::new();
        for p in parts {
            match p {
                FPart::Lit(l) => s.push_str(l),
                FPart::Val(e, conv, spec) => {
                    let v = self.eval(f, e)?;
                    let v = match conv {
                        b'r' | b'a' => Value::Str(Rc::from(self.repr(&v)?.as_str())),
                        b's' => Value::Str(Rc::from(self.to_str(&v)?.as_str())),
                        _ => v,
                    };
                    let spec = match spec {
                        Some(sp) => self.fstring(f, sp)?,
                        None => String::new(),
                    };
                    s.push_str(&self.format(&v, &spec)?);
                }
            }
        }
        Ok(s)
    }

    /// `format(v, spec)`
    pub fn format(&self, v: &Value, spec: &str) -> PyResult<String> {
        if let Value::Instance(_) = v {
            if let Some(m) = self.lookup_special(v, "__format__") {
                let r = self.call_with_self(&m, v, &[Value::str(spec)])?;
                return self.to_str(&r);
            }
            let s = self.to_str(v)?;
            return crate::format::format_str(self, &s, spec);
        }
        crate::format::format_value(self, v, spec)
    }

    fn eval_elts(&self, f: &mut Frame, elts: &[Elt]) -> PyResult<Vec<Value>> {
        let mut out = Vec::with_capacity(elts.len());
        for e in elts {
            match e {
                Elt::One(e) => out.push(self.eval(f, e)?),
                Elt::Star(e) => {
                    let v = self.eval(f, e)?;
                    out.extend(self.collect(&v)?);
                }
            }
        }
        Ok(out)
    }

    /// Evaluates plain positional arguments straight into a new frame's first slots.
    fn eval_into_locals(
        &self,
        f: &mut Frame,
        first: Option<Value>,
        pos: &[Elt],
    ) -> PyResult<Vec<Option<Value>>> {
        let mut locals = self.new_locals();
        let has_first = first.is_some();
        if let Some(v) = first {
            locals.push(Some(v));
        }
        for e in pos {
            let (Elt::One(e) | Elt::Star(e)) = e;
            match self.eval(f, e) {
                Ok(v) => locals.push(Some(v)),
                Err(err) => {
                    // As the argument vector would: the arguments go first, then `self`.
                    let me = if has_first { locals[0].take() } else { None };
                    drop(locals);
                    drop(me);
                    return Err(err);
                }
            }
        }
        Ok(locals)
    }

    #[allow(clippy::type_complexity)]
    fn eval_args(&self, f: &mut Frame, a: &Args) -> PyResult<(Vec<Value>, Vec<(Rc<str>, Value)>)> {
        let pos = self.eval_elts(f, &a.pos)?;
        let mut kw = Vec::with_capacity(a.kw.len());
        for (n, e) in &a.kw {
            kw.push((n.s.clone(), self.eval(f, e)?));
        }
        if let Some(e) = &a.kwstar {
            let m = self.eval(f, e)?;
            for (k, v) in self.items_of(&m)? {
                let Value::Str(k) = k else {
                    return Err(self.type_error("keywords must be strings"));
                };
                kw.push((k, v));
            }
        }
        Ok((pos, kw))
    }

    fn eval_call_method(
        &self,
        f: &mut Frame,
        ov: Value,
        n: &crate::compile::Name,
        args: &Args,
    ) -> PyResult {
        // Instances: the method is called with `self` prepended, no bound method is made
        // (as CPython's LOAD_METHOD/CALL).
        if let Value::Instance(inst) = &ov {
            let in_dict = inst.with_table(|t| t.find_str(n.h, &n.s).map(|s| t.value(s).clone()));
            if in_dict.is_none() {
                if let Some(m @ Value::Function(_)) = lookup_class(&inst.class, n) {
                    if let Value::Function(fun) = &m {
                        if args.simple && Self::simple_arity(fun, args.pos.len() + 1) {
                            let locals = self.eval_into_locals(f, Some(ov), &args.pos)?;
                            return self.enter(fun, locals);
                        }
                    }
                    let (pos, kw) = self.eval_args(f, args)?;
                    return self.call_owned(&m, Some(ov), pos, kw);
                }
            } else if let Some(m) = in_dict {
                drop(ov);
                let (pos, kw) = self.eval_args(f, args)?;
                return self.call_owned(&m, None, pos, kw);
            }
        }
        if let Value::Native(nat) = &ov {
            if let NativeKind::Super(cls, obj) = &nat.kind {
                let (pos, kw) = self.eval_args(f, args)?;
                let m = self.super_lookup(cls, obj, n)?;
                drop(ov);
                return self.call_owned(&m, None, pos, kw);
            }
        }
        if crate::builtins::has_native_methods(&ov) {
            let (pos, kw) = self.eval_args(f, args)?;
            let r = crate::builtins::call_native_method(self, &ov, &n.s, &pos, &kw);
            drop(ov);
            return r;
        }
        let m = self.getattr(&ov, n)?;
        drop(ov);
        let (pos, kw) = self.eval_args(f, args)?;
        self.call_owned(&m, None, pos, kw)
    }

    /// `super().name`
    pub fn super_lookup(&self, cls: &Gc<Class>, obj: &Value, n: &crate::compile::Name) -> PyResult {
        let start = cls.base.clone();
        let found = match &start {
            Some(b) => lookup_class(b, n),
            None => None,
        };
        match found {
            Some(Value::Function(func)) => match obj {
                Value::Class(_) => Ok(Value::Function(func)),
                _ => Ok(self.new_method(obj.clone(), Value::Function(func))),
            },
            Some(Value::Builtin(b)) => Ok(self.new_native(NativeKind::BoundBuiltin {
                recv: obj.clone(),
                name: Rc::from(crate::builtins::builtin_name(b)),
            })),
            Some(v) => Ok(v),
            None => {
                if &*n.s == "__init__" || &*n.s == "__del__" {
                    return Ok(Value::Builtin(crate::builtins::NOOP));
                }
                Err(self.exc(
                    "AttributeError",
                    format!("'super' object has no attribute '{}'", n.s),
                ))
            }
        }
    }

    fn load_global(&self, g: &Gc<Dict>, n: &crate::compile::Name) -> PyResult {
        if let Some(v) = self.dict_get_str(g, n) {
            return Ok(v);
        }
        if let Some(v) = self.dict_get_str(&self.builtins, n) {
            return Ok(v);
        }
        Err(self.exc("NameError", format!("name '{}' is not defined", n.s)))
    }

    // ------------------------------------------------------------ functions and calls

    fn make_function(&self, f: &mut Frame, def: &Rc<FuncDef>) -> PyResult {
        let mut defaults = Vec::with_capacity(def.defaults.len());
        for d in &def.defaults {
            defaults.push(self.eval(f, d)?);
        }
        let mut kw_defaults = Vec::with_capacity(def.kw_defaults.len());
        for d in &def.kw_defaults {
            kw_defaults.push(match d {
                Some(d) => Some(self.eval(f, d)?),
                None => None,
            });
        }
        let closure = if def.closure.is_empty() {
            None
        } else {
            let cells: Vec<Value> = def
                .closure
                .iter()
                .map(|&i| Value::Cell(f.cells[i as usize].clone()))
                .collect();
            Some(self.heap.alloc(Tuple {
                items: cells.into_boxed_slice(),
                born: Default::default(),
            }))
        };
        let func = Function {
            code: def.code.clone(),
            globals: f.globals.clone(),
            defaults,
            kw_defaults,
            closure,
            dict: RefCell::new(None),
            name: RefCell::new(def.code.name.clone()),
        };
        Ok(Value::Function(self.heap.alloc(func)))
    }

    /// Calls a function value with an optional `self` first (borrowed arguments).
    pub fn call_function_value(
        &self,
        func: &Value,
        first: Option<&Value>,
        args: &[Value],
        kw: &[(Rc<str>, Value)],
    ) -> PyResult {
        match func {
            Value::Function(fun) => {
                let nargs = args.len() + first.is_some() as usize;
                if kw.is_empty() && Self::simple_arity(fun, nargs) {
                    let mut locals = self.new_locals();
                    locals.extend(
                        first
                            .cloned()
                            .into_iter()
                            .chain(args.iter().cloned())
                            .map(Some),
                    );
                    return self.enter(fun, locals);
                }
                self.call_function(fun, first.cloned(), args.to_vec(), kw.to_vec())
            }
            other => match first {
                Some(s) => {
                    let mut v = Vec::with_capacity(args.len() + 1);
                    v.push(s.clone());
                    v.extend(args.iter().cloned());
                    self.call(other, &v, kw)
                }
                None => self.call(other, args, kw),
            },
        }
    }

    /// Calls a callable with `self` prepended (methods found on a class).
    pub fn call_with_self(&self, func: &Value, me: &Value, args: &[Value]) -> PyResult {
        self.call_function_value(func, Some(me), args, &[])
    }

    /// Calls with owned arguments: a Python function takes them over (CPython 3.11 moves the
    /// caller's references into the new frame, so an argument dies with the callee's locals).
    pub fn call_owned(
        &self,
        func: &Value,
        first: Option<Value>,
        args: Vec<Value>,
        kw: Vec<(Rc<str>, Value)>,
    ) -> PyResult {
        match func {
            Value::Function(fun) => self.call_function(fun, first, args, kw),
            Value::Method(m) if first.is_none() => {
                if let Value::Function(fun) = &m.func {
                    return self.call_function(fun, Some(m.recv.clone()), args, kw);
                }
                self.call(func, &args, &kw)
            }
            other => match first {
                Some(s) => {
                    let mut v = Vec::with_capacity(args.len() + 1);
                    v.push(s);
                    v.extend(args);
                    let r = self.call(other, &v, &kw);
                    drop(v);
                    r
                }
                None => {
                    let r = self.call(other, &args, &kw);
                    drop(args);
                    r
                }
            },
        }
    }

    /// Calls a Python function.
    pub fn call_function(
        &self,
        fun: &Gc<Function>,
        first: Option<Value>,
        args: Vec<Value>,
        kw: Vec<(Rc<str>, Value)>,
    ) -> PyResult {
        let code = &fun.code;
        let nargs = args.len() + first.is_some() as usize;
        if kw.is_empty() && Self::simple_arity(fun, nargs) {
            let mut locals = self.new_locals();
            locals.extend(first.into_iter().chain(args).map(Some));
            return self.enter(fun, locals);
        }
        let mut locals = self.new_locals();
        locals.resize(code.local_names.len(), None);
        let argc = code.argcount;
        let all = first.into_iter().chain(args);
        let mut extra = Vec::new();
        for (i, a) in all.enumerate() {
            if i < argc {
                locals[i] = Some(a);
            } else if code.vararg.is_some() {
                extra.push(a);
            } else {
                return Err(self.type_error(format!(
                    "{}() takes {} positional argument{} but {} were given",
                    code.name,
                    argc,
                    if argc == 1 { "" } else { "s" },
                    nargs
                )));
            }
        }
        if let Some(va) = code.vararg {
            locals[va as usize] = Some(self.new_tuple(extra));
        }
        let mut kwextra: Vec<(Rc<str>, Value)> = Vec::new();
        for (k, v) in kw {
            let pos = code.local_names[..argc + code.kwonly]
                .iter()
                .position(|n| **n == *k);
            match pos {
                Some(p) => {
                    if locals[p].is_some() {
                        return Err(self.type_error(format!(
                            "{}() got multiple values for argument '{k}'",
                            code.name
                        )));
                    }
                    locals[p] = Some(v);
                }
                None if code.kwarg.is_some() => kwextra.push((k, v)),
                None => {
                    return Err(self.type_error(format!(
                        "{}() got an unexpected keyword argument '{k}'",
                        code.name
                    )))
                }
            }
        }
        let ndef = fun.defaults.len();
        #[allow(clippy::needless_range_loop)]
        for i in 0..argc {
            if locals[i].is_none() {
                if i + ndef >= argc {
                    locals[i] = Some(fun.defaults[i + ndef - argc].clone());
                } else {
                    return Err(self.type_error(format!(
                        "{}() missing 1 required positional argument: '{}'",
                        code.name, code.local_names[i]
                    )));
                }
            }
        }
        for j in 0..code.kwonly {
            let i = argc + j;
            if locals[i].is_none() {
                match fun.kw_defaults.get(j).and_then(|d| d.clone()) {
                    Some(d) => locals[i] = Some(d),
                    None => {
                        return Err(self.type_error(format!(
                            "{}() missing 1 required keyword-only argument: '{}'",
                            code.name, code.local_names[i]
                        )))
                    }
                }
            }
        }
        if let Some(ka) = code.kwarg {
            let d = self.heap.alloc(Dict::default());
            for (k, v) in kwextra {
                self.dict_set(&d, Value::Str(k), v)?;
            }
            locals[ka as usize] = Some(Value::Dict(d));
        }
        self.make_cells_and_run(fun, locals)
    }

    /// Whether a call with `nargs` positional arguments (and no keywords) just fills the first
    /// slots, the defaults the rest of the parameters.
    #[inline]
    fn simple_arity(fun: &Function, nargs: usize) -> bool {
        let code = &fun.code;
        code.vararg.is_none()
            && code.kwarg.is_none()
            && code.kwonly == 0
            && nargs <= code.argcount
            && nargs + fun.defaults.len() >= code.argcount
    }

    /// An empty local-slot vector (reused from the pool when possible).
    #[inline]
    fn new_locals(&self) -> Vec<Option<Value>> {
        self.frame_pool.borrow_mut().pop().unwrap_or_default()
    }

    /// Runs a function whose positional arguments are in `locals` (a call that passed
    /// [`Self::simple_arity`]): fills in the defaults and the other slots.
    fn enter(&self, fun: &Gc<Function>, mut locals: Vec<Option<Value>>) -> PyResult {
        let code = &fun.code;
        let argc = code.argcount;
        let ndef = fun.defaults.len();
        for i in locals.len()..argc {
            locals.push(Some(fun.defaults[i + ndef - argc].clone()));
        }
        locals.resize(code.local_names.len(), None);
        self.make_cells_and_run(fun, locals)
    }

    fn make_cells_and_run(&self, fun: &Gc<Function>, mut locals: Vec<Option<Value>>) -> PyResult {
        let code = &fun.code;
        let mut cells = Vec::new();
        if !code.cell_names.is_empty() {
            cells.reserve(code.cell_names.len());
            for _ in 0..code.ncells {
                cells.push(self.heap.alloc(CellObj::default()));
            }
            if let Some(cl) = &fun.closure {
                for c in cl.items.iter() {
                    if let Value::Cell(c) = c {
                        cells.push(c.clone());
                    }
                }
            }
            for &(slot, c) in &code.cell_params {
                let v = locals[slot as usize].take();
                *cells[c as usize].value.borrow_mut() = v;
            }
        }
        self.run_frame(code, &fun.globals, locals, cells)
    }

    /// Runs code in a new frame (functions and comprehensions).
    pub fn run_code(
        &self,
        code: &Rc<Code>,
        globals: &Gc<Dict>,
        mut locals: Vec<Option<Value>>,
        free: Vec<Gc<CellObj>>,
    ) -> PyResult {
        locals.resize(code.local_names.len(), None);
        let mut cells = Vec::with_capacity(code.cell_names.len());
        for _ in 0..code.ncells {
            cells.push(self.heap.alloc(CellObj::default()));
        }
        cells.extend(free);
        for &(slot, c) in &code.cell_params {
            let v = locals[slot as usize].take();
            *cells[c as usize].value.borrow_mut() = v;
        }
        self.run_frame(code, globals, locals, cells)
    }

    fn run_frame(
        &self,
        code: &Rc<Code>,
        globals: &Gc<Dict>,
        locals: Vec<Option<Value>>,
        cells: Vec<Gc<CellObj>>,
    ) -> PyResult {
        let d = self.depth.get();
        if d > 900 {
            return Err(self.exc("RecursionError", "maximum recursion depth exceeded"));
        }
        self.depth.set(d + 1);
        let mut frame = Frame {
            code,
            locals,
            cells,
            globals: globals.clone(),
            ns: None,
        };
        let r = self.exec_block(&mut frame, &code.body);
        self.depth.set(d);
        match r {
            Ok(flow) => {
                // The locals die in slot order (as a dropped vector's), then the cells; the
                // emptied vector goes back to the pool.
                let mut locals = std::mem::take(&mut frame.locals);
                locals.clear();
                if locals.capacity() <= 64 {
                    self.frame_pool.borrow_mut().push(locals);
                }
                drop(frame);
                Ok(match flow {
                    Flow::Return(v) => v,
                    _ => Value::None,
                })
            }
            Err(e) => {
                // The exception's traceback keeps this frame's variables alive, as CPython's
                // traceback keeps the frame.
                let mut keep = std::mem::take(&mut frame.locals);
                keep.extend(frame.cells.drain(..).map(|c| Some(Value::Cell(c))));
                Self::push_tb(&e, &code.name, keep);
                Err(e)
            }
        }
    }

    /// Calls any callable.
    pub fn call(&self, func: &Value, args: &[Value], kw: &[(Rc<str>, Value)]) -> PyResult {
        match func {
            Value::Function(f) => self.call_function(f, None, args.to_vec(), kw.to_vec()),
            Value::Method(m) => self.call_function_value(&m.func, Some(&m.recv), args, kw),
            Value::Builtin(b) => crate::builtins::call_builtin(self, *b, args, kw),
            Value::Class(c) => self.instantiate(c, args, kw),
            Value::Native(n) => match &n.kind {
                NativeKind::BoundBuiltin { recv, name } => {
                    crate::builtins::call_native_method(self, recv, name, args, kw)
                }
                _ => crate::modules::call_native(self, n, args, kw),
            },
            Value::WeakRef(w) => {
                if !args.is_empty() {
                    return Err(self.type_error("weakref() takes no arguments"));
                }
                Ok(w.upgrade().and_then(Value::from_any).unwrap_or(Value::None))
            }
            Value::Instance(inst) => {
                match self.lookup_special(func, "__call__") {
                    Some(m) => self.call_function_value(&m, Some(func), args, kw),
                    None if inst.base.is_some() => {
                        self.call(inst.base.as_ref().unwrap_or(&Value::None), args, kw)
                    }
                    None => Err(self
                        .type_error(format!("'{}' object is not callable", self.type_name(func)))),
                }
            }
            _ => Err(self.type_error(format!("'{}' object is not callable", self.type_name(func)))),
        }
    }

    /// Calls `obj.name(*args)`.
    pub fn call_method(&self, obj: &Value, name: &str, args: &[Value]) -> PyResult {
        let n = crate::compile::Name {
            s: Rc::from(name),
            h: str_hash(name),
        };
        if let Value::Instance(i) = obj {
            if let Some(m @ Value::Function(_)) = lookup_class(&i.class, &n) {
                return self.call_with_self(&m, obj, args);
            }
        }
        if crate::builtins::has_native_methods(obj) {
            return crate::builtins::call_native_method(self, obj, name, args, &[]);
        }
        let m = self.getattr(obj, &n)?;
        self.call(&m, args, &[])
    }

    /// A special method looked up on the type (not the instance), as CPython does.
    pub fn lookup_special(&self, v: &Value, name: &str) -> Option<Value> {
        match v {
            Value::Instance(i) => lookup_class_str(&i.class, name, str_hash(name))
                .filter(|m| !matches!(m, Value::None)),
            _ => None,
        }
    }

    fn build_class(
        &self,
        name: &Rc<str>,
        bases: Vec<Value>,
        code: &Rc<Code>,
        closure: Vec<Gc<CellObj>>,
        globals: &Gc<Dict>,
    ) -> PyResult {
        if bases.len() > 1 {
            return Err(self.exc(
                "NotImplementedError",
                "multiple inheritance is outside minipy's subset",
            ));
        }
        let base = match bases.into_iter().next() {
            Some(Value::Class(c)) => c,
            Some(_) => return Err(self.type_error("bases must be types")),
            None => self.types.object.clone(),
        };
        let ns = self.heap.alloc(Dict::default());
        self.dict_set(&ns, Value::str("__module__"), Value::str("__main__"))?;
        self.dict_set(
            &ns,
            Value::str("__qualname__"),
            Value::Str(code.qualname.clone()),
        )?;
        let mut cells = Vec::with_capacity(code.cell_names.len());
        for _ in 0..code.ncells {
            cells.push(self.heap.alloc(CellObj::default()));
        }
        cells.extend(closure);
        {
            let mut frame = Frame {
                code,
                locals: Vec::new(),
                cells,
                globals: globals.clone(),
                ns: Some(ns.clone()),
            };
            let r = self.exec_block(&mut frame, &code.body);
            if let Err(e) = r {
                Self::push_tb(&e, name, Vec::new());
                return Err(e);
            }
            let has_eq = self
                .dict_get_str(&ns, &crate::compile::Name::of("__eq__"))
                .is_some();
            let has_hash = self
                .dict_get_str(&ns, &crate::compile::Name::of("__hash__"))
                .is_some();
            if has_eq && !has_hash {
                self.dict_set(&ns, Value::str("__hash__"), Value::None)?;
            }
            let cls = self.new_class(
                name.clone(),
                code.qualname.clone(),
                Some(base),
                ns,
                Kind::User,
            );
            if let Some(cc) = code.class_cell {
                *frame.cells[cc as usize].value.borrow_mut() = Some(Value::Class(cls.clone()));
            }
            Ok(Value::Class(cls))
        }
    }

    /// Makes a class object (with its `__mro__` cycle and, like CPython, `__dict__`/`__weakref__`
    /// descriptors that point back at it, so `gc.collect()` counts a class as CPython does).
    pub fn new_class(
        &self,
        name: Rc<str>,
        qualname: Rc<str>,
        base: Option<Gc<Class>>,
        dict: Gc<Dict>,
        kind: Kind,
    ) -> Gc<Class> {
        let is_exc = base.as_ref().is_some_and(|b| b.is_exc) || &*name == "BaseException";
        let user = kind == Kind::User;
        let descrs = match &base {
            Some(b) if user && b.kind == Kind::Object => 2,
            Some(b) if user && b.kind == Kind::Exception => 1,
            _ => 0,
        };
        let cls = self.heap.alloc(Class {
            name,
            qualname,
            base: base.clone(),
            dict,
            mro: RefCell::new(None),
            bases: RefCell::new(None),
            kind,
            is_exc,
            cache: Default::default(),
        });
        cls.dict.t.borrow_mut().mark_class_dict();
        let mut mro = vec![Value::Class(cls.clone())];
        let mut b = base.clone();
        while let Some(c) = b {
            mro.push(Value::Class(c.clone()));
            b = c.base.clone();
        }
        let mro = self.heap.alloc(Tuple {
            items: mro.into_boxed_slice(),
            born: Default::default(),
        });
        *cls.mro.borrow_mut() = Some(mro);
        let bases: Vec<Value> = base.into_iter().map(Value::Class).collect();
        let bases = self.heap.alloc(Tuple {
            items: bases.into_boxed_slice(),
            born: Default::default(),
        });
        *cls.bases.borrow_mut() = Some(bases);
        if user {
            for (i, n) in ["__dict__", "__weakref__"].iter().enumerate() {
                if i + descrs >= 2 {
                    let d = self.new_native(NativeKind::GetSet(cls.clone()));
                    self.dict_set_str(&cls.dict, &crate::compile::Name::of(n), d);
                }
            }
        }
        cls
    }

    fn instantiate(&self, c: &Gc<Class>, args: &[Value], kw: &[(Rc<str>, Value)]) -> PyResult {
        if c.kind != Kind::User && c.kind != Kind::Exception && c.kind != Kind::Object {
            return crate::builtins::construct(self, c, args, kw);
        }
        // A subclass of a native type: the native part is made from the arguments.
        let mut native = None;
        let mut k = c.base.clone();
        while let Some(b) = k {
            if matches!(b.kind, Kind::WeakRef | Kind::Finalize | Kind::WeakMethod) {
                native = Some(crate::builtins::construct(self, &b, args, kw)?);
                break;
            }
            k = b.base.clone();
        }
        if let Some(base) = native {
            let inst = Value::Instance(self.heap.alloc(Instance {
                class: c.clone(),
                dict: RefCell::new(InstDict::Inline(Table::default())),
                exc: RefCell::new(None),
                base: Some(base.clone()),
            }));
            if let Value::Native(n) = &base {
                if let NativeKind::Finalize(fo) = &n.kind {
                    // The registry keeps the subclass instance, as CPython's keeps `self`.
                    let old = {
                        let mut reg = self.finalizers.borrow_mut();
                        reg.iter_mut()
                            .find(|(id, _)| *id == fo.id)
                            .map(|e| std::mem::replace(&mut e.1, inst.clone()))
                    };
                    drop(old);
                }
            }
            if let Some(init @ Value::Function(_)) = lookup_class_static(c, "__init__") {
                self.call_function_value(&init, Some(&inst), args, kw)?;
            }
            return Ok(inst);
        }
        if c.kind == Kind::Object && args.is_empty() && c.base.is_none() {
            return Ok(self.new_native(NativeKind::Object));
        }
        let inst = if c.is_exc {
            self.new_exception(c.clone(), args.to_vec())
        } else {
            self.heap.alloc(Instance {
                class: c.clone(),
                dict: RefCell::new(InstDict::Inline(Table::default())),
                exc: RefCell::new(None),
                base: None,
            })
        };
        let v = Value::Instance(inst);
        let init = lookup_class_static(c, "__init__");
        match init {
            Some(init @ Value::Function(_)) => {
                let r = self.call_function_value(&init, Some(&v), args, kw)?;
                if !matches!(r, Value::None) {
                    return Err(self.type_error("__init__() should return None"));
                }
            }
            _ => {
                if !c.is_exc && (!args.is_empty() || !kw.is_empty()) {
                    return Err(self.type_error(format!("{}() takes no arguments", c.name)));
                }
            }
        }
        Ok(v)
    }

    // ------------------------------------------------------------ small constructors

    /// A new list.
    pub fn new_list(&self, items: Vec<Value>) -> Value {
        Value::List(self.heap.alloc(List {
            items: RefCell::new(items),
        }))
    }

    /// A new tuple.
    pub fn new_tuple(&self, items: Vec<Value>) -> Value {
        Value::Tuple(self.heap.alloc(Tuple {
            items: items.into_boxed_slice(),
            born: std::cell::Cell::new(self.collections.get()),
        }))
    }

    /// A new native object.
    pub fn new_native(&self, kind: NativeKind) -> Value {
        Value::Native(self.heap.alloc(Native { kind }))
    }

    /// A new bound method.
    pub fn new_method(&self, recv: Value, func: Value) -> Value {
        Value::Method(self.heap.alloc(Method { recv, func }))
    }

    // ------------------------------------------------------------ attributes

    /// `getattr(o, name)`
    pub fn getattr(&self, o: &Value, n: &crate::compile::Name) -> PyResult {
        match self.getattr_opt(o, n)? {
            Some(v) => Ok(v),
            None => {
                if let Value::Instance(_) = o {
                    if let Some(ga) = self.lookup_special(o, "__getattr__") {
                        return self.call_with_self(&ga, o, &[Value::Str(n.s.clone())]);
                    }
                }
                Err(self.attr_error(o, &n.s))
            }
        }
    }

    /// The `AttributeError` CPython raises.
    pub fn attr_error(&self, o: &Value, n: &str) -> Exc {
        match o {
            Value::Class(c) => self.exc(
                "AttributeError",
                format!("type object '{}' has no attribute '{n}'", c.name),
            ),
            Value::Module(m) => self.exc(
                "AttributeError",
                format!("module '{}' has no attribute '{n}'", m.name),
            ),
            _ => self.exc(
                "AttributeError",
                format!("'{}' object has no attribute '{n}'", self.type_name(o)),
            ),
        }
    }

    /// Attribute lookup; `None` when missing.
    pub fn getattr_opt(&self, o: &Value, n: &crate::compile::Name) -> PyResult<Option<Value>> {
        match o {
            Value::Instance(inst) => {
                if &*n.s == "__dict__" {
                    return Ok(Some(Value::Dict(self.materialize_dict(inst))));
                }
                let cls_attr = lookup_class(&inst.class, n);
                if let Some(Value::Native(nat)) = &cls_attr {
                    if let NativeKind::Property(get, _) = &nat.kind {
                        return self.call(get, std::slice::from_ref(o), &[]).map(Some);
                    }
                }
                let own = inst.with_table(|t| t.find_str(n.h, &n.s).map(|s| t.value(s).clone()));
                if own.is_some() {
                    return Ok(own);
                }
                if let Some(a) = cls_attr {
                    return Ok(Some(self.bind(a, o, &inst.class)));
                }
                if let Some(base) = &inst.base {
                    if let Some(v) = self.getattr_opt(base, n)? {
                        return Ok(Some(v));
                    }
                }
                match &*n.s {
                    "__class__" => Ok(Some(Value::Class(inst.class.clone()))),
                    "__dict__" => Ok(Some(Value::Dict(self.materialize_dict(inst)))),
                    "args" if inst.class.is_exc => {
                        let args = inst
                            .exc
                            .borrow()
                            .as_ref()
                            .map(|s| s.args.clone())
                            .unwrap_or_default();
                        Ok(Some(self.new_tuple(args)))
                    }
                    "__traceback__" if inst.class.is_exc => Ok(Some(Value::None)),
                    "__cause__" if inst.class.is_exc => Ok(Some(
                        inst.exc
                            .borrow()
                            .as_ref()
                            .and_then(|s| s.cause.clone())
                            .unwrap_or(Value::None),
                    )),
                    _ => Ok(None),
                }
            }
            Value::Class(c) => {
                match &*n.s {
                    "__name__" => return Ok(Some(Value::Str(c.name.clone()))),
                    "__qualname__" => return Ok(Some(Value::Str(c.qualname.clone()))),
                    "__mro__" => return Ok(c.mro.borrow().clone().map(Value::Tuple)),
                    "__bases__" => return Ok(c.bases.borrow().clone().map(Value::Tuple)),
                    "__base__" => {
                        return Ok(Some(
                            c.base.clone().map(Value::Class).unwrap_or(Value::None),
                        ))
                    }
                    "__dict__" => return Ok(Some(Value::Dict(c.dict.clone()))),
                    "__class__" => return Ok(Some(Value::Class(self.types.type_.clone()))),
                    _ => {}
                }
                match lookup_class(c, n) {
                    Some(Value::Native(nat)) => match &nat.kind {
                        NativeKind::StaticMethod(f) => Ok(Some(f.clone())),
                        NativeKind::ClassMethod(f) => {
                            Ok(Some(self.new_method(o.clone(), f.clone())))
                        }
                        _ => Ok(Some(Value::Native(nat))),
                    },
                    Some(v) => Ok(Some(v)),
                    None => {
                        if c.kind != Kind::User && crate::builtins::type_has_method(c.kind, &n.s) {
                            {
                                return Ok(Some(self.new_native(NativeKind::UnboundBuiltin {
                                    kind: c.kind,
                                    name: n.s.clone(),
                                })));
                            }
                        }
                        Ok(None)
                    }
                }
            }
            Value::Function(fun) => {
                match &*n.s {
                    "__name__" => return Ok(Some(Value::Str(fun.name.borrow().clone()))),
                    "__qualname__" => return Ok(Some(Value::Str(fun.code.qualname.clone()))),
                    "__closure__" => {
                        return Ok(Some(
                            fun.closure.clone().map(Value::Tuple).unwrap_or(Value::None),
                        ))
                    }
                    "__defaults__" => {
                        return Ok(Some(if fun.defaults.is_empty() {
                            Value::None
                        } else {
                            self.new_tuple(fun.defaults.clone())
                        }))
                    }
                    "__globals__" => return Ok(Some(Value::Dict(fun.globals.clone()))),
                    "__module__" => return Ok(Some(Value::str("__main__"))),
                    "__dict__" => return Ok(Some(Value::Dict(self.function_dict(fun)))),
                    _ => {}
                }
                let d = fun.dict.borrow().clone();
                match d {
                    Some(d) => Ok(self.dict_get_str(&d, n)),
                    None => Ok(None),
                }
            }
            Value::Method(m) => match &*n.s {
                "__self__" => Ok(Some(m.recv.clone())),
                "__func__" => Ok(Some(m.func.clone())),
                _ => self.getattr_opt(&m.func, n),
            },
            Value::Module(m) => Ok(self.dict_get_str(&m.dict, n)),
            Value::Cell(c) if &*n.s == "cell_contents" => Ok(c.value.borrow().clone()),
            Value::WeakRef(w) => match &*n.s {
                "__callback__" => {
                    let cb = if w.has_callback() {
                        self.weak_callbacks
                            .borrow()
                            .get(&(Weak::as_ptr(w) as usize))
                            .cloned()
                            .unwrap_or(Value::None)
                    } else {
                        Value::None
                    };
                    Ok(Some(match cb {
                        Value::WeakRef(cw) => cw
                            .upgrade()
                            .and_then(Value::from_any)
                            .unwrap_or(Value::None),
                        other => other,
                    }))
                }
                _ => Ok(None),
            },
            Value::Native(nat) => crate::modules::native_getattr(self, o, nat, n),
            _ => {
                if &*n.s == "__class__" {
                    return Ok(Some(Value::Class(self.class_of(o))));
                }
                if crate::builtins::has_native_methods(o)
                    && crate::builtins::type_has_method(self.class_of(o).kind, &n.s)
                {
                    return Ok(Some(self.new_native(NativeKind::BoundBuiltin {
                        recv: o.clone(),
                        name: n.s.clone(),
                    })));
                }
                Ok(None)
            }
        }
    }

    fn bind(&self, a: Value, o: &Value, cls: &Gc<Class>) -> Value {
        match a {
            Value::Function(_) => self.new_method(o.clone(), a),
            Value::Native(nat) => match &nat.kind {
                NativeKind::StaticMethod(f) => f.clone(),
                NativeKind::ClassMethod(f) => self.new_method(Value::Class(cls.clone()), f.clone()),
                _ => Value::Native(nat),
            },
            Value::Builtin(b) => self.new_native(NativeKind::BoundBuiltin {
                recv: o.clone(),
                name: Rc::from(crate::builtins::builtin_name(b)),
            }),
            other => other,
        }
    }

    /// `obj.__dict__`: makes the instance's dict a real `dict` object from now on.
    pub fn materialize_dict(&self, inst: &Gc<Instance>) -> Gc<Dict> {
        if let InstDict::Obj(d) = &*inst.dict.borrow() {
            return d.clone();
        }
        let d = self.heap.alloc(Dict::default());
        let mut b = inst.dict.borrow_mut();
        if let InstDict::Inline(t) = &mut *b {
            *d.t.borrow_mut() = std::mem::take(t);
        }
        *b = InstDict::Obj(d.clone());
        d
    }

    fn function_dict(&self, fun: &Gc<Function>) -> Gc<Dict> {
        if let Some(d) = &*fun.dict.borrow() {
            return d.clone();
        }
        let d = self.heap.alloc(Dict::default());
        *fun.dict.borrow_mut() = Some(d.clone());
        d
    }

    /// `setattr(o, name, v)`
    pub fn setattr(&self, o: &Value, n: &crate::compile::Name, v: Value) -> PyResult<()> {
        match o {
            Value::Instance(inst) => {
                if let Some(Value::Native(nat)) = lookup_class(&inst.class, n) {
                    if let NativeKind::Property(_, set) = &nat.kind {
                        if matches!(set, Value::None) {
                            return Err(self.exc("AttributeError", "can't set attribute"));
                        }
                        self.call(set, &[o.clone(), v], &[])?;
                        return Ok(());
                    }
                }
                if let Some(sa) = lookup_class_static(&inst.class, "__setattr__")
                    .filter(|m| !matches!(m, Value::None))
                {
                    self.call_with_self(&sa, o, &[Value::Str(n.s.clone()), v])?;
                    return Ok(());
                }
                let old = inst.with_table_mut(|t| match t.find_str(n.h, &n.s) {
                    Some(s) => Some(t.set_value(s, v)),
                    None => {
                        t.insert_new(n.h, Value::Str(n.s.clone()), v);
                        None
                    }
                });
                drop(old);
                Ok(())
            }
            Value::Class(c) => {
                self.dict_set_str(&c.dict, n, v);
                Ok(())
            }
            Value::Function(fun) => {
                if &*n.s == "__name__" {
                    if let Value::Str(s) = v {
                        *fun.name.borrow_mut() = s;
                    }
                    return Ok(());
                }
                let d = self.function_dict(fun);
                self.dict_set_str(&d, n, v);
                Ok(())
            }
            Value::Module(m) => {
                self.dict_set_str(&m.dict, n, v);
                Ok(())
            }
            Value::Native(nat) => crate::modules::native_setattr(self, nat, n, v),
            _ => Err(self.exc(
                "AttributeError",
                format!("'{}' object has no attribute '{}'", self.type_name(o), n.s),
            )),
        }
    }

    /// `delattr(o, name)`
    pub fn delattr(&self, o: &Value, n: &crate::compile::Name) -> PyResult<()> {
        let ok = match o {
            Value::Instance(inst) => {
                if let Some(da) = self.lookup_special(o, "__delattr__") {
                    self.call_with_self(&da, o, &[Value::Str(n.s.clone())])?;
                    return Ok(());
                }
                let old = inst.with_table_mut(|t| t.find_str(n.h, &n.s).map(|s| t.remove_at(s)));
                let ok = old.is_some();
                drop(old);
                ok
            }
            Value::Class(c) => self.dict_del_str(&c.dict, n),
            Value::Function(fun) => {
                let d = fun.dict.borrow().clone();
                d.is_some_and(|d| self.dict_del_str(&d, n))
            }
            Value::Module(m) => self.dict_del_str(&m.dict, n),
            Value::Native(nat) => {
                if let NativeKind::Proxy(p) = &nat.kind {
                    let target = crate::modules::proxy_target(self, p)?;
                    return self.delattr(&target, n);
                }
                false
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(self.attr_error(o, &n.s))
        }
    }

    // ------------------------------------------------------------ dict helpers

    /// `d[name]` for a `str` key.
    pub fn dict_get_str(&self, d: &Gc<Dict>, n: &crate::compile::Name) -> Option<Value> {
        let t = d.t.borrow();
        t.find_str(n.h, &n.s).map(|s| t.value(s).clone())
    }

    /// `d[name] = v` for a `str` key (the old value is dropped after the borrow).
    pub fn dict_set_str(&self, d: &Gc<Dict>, n: &crate::compile::Name, v: Value) {
        let old = {
            let mut t = d.t.borrow_mut();
            match t.find_str(n.h, &n.s) {
                Some(s) => Some(t.set_value(s, v)),
                None => {
                    t.insert_new(n.h, Value::Str(n.s.clone()), v);
                    None
                }
            }
        };
        drop(old);
    }

    /// `del d[name]`; false if missing.
    pub fn dict_del_str(&self, d: &Gc<Dict>, n: &crate::compile::Name) -> bool {
        let old = {
            let mut t = d.t.borrow_mut();
            t.find_str(n.h, &n.s).map(|s| t.remove_at(s))
        };
        let ok = old.is_some();
        drop(old);
        ok
    }

    /// Python `hash()`.
    pub fn hash(&self, v: &Value) -> PyResult<u64> {
        if let Some(h) = native_hash(v) {
            return Ok(h);
        }
        match v {
            Value::Instance(_) => match self.lookup_special_raw(v, "__hash__") {
                Some(Value::None) => {
                    Err(self.type_error(format!("unhashable type: '{}'", self.type_name(v))))
                }
                Some(m) => match self.call_with_self(&m, v, &[])? {
                    Value::Int(i) => Ok(int_hash(i)),
                    _ => Err(self.type_error("__hash__ method should return an integer")),
                },
                None => Ok((v.id() >> 4) as u64),
            },
            Value::List(_) | Value::Dict(_) | Value::Set(_) => {
                Err(self.type_error(format!("unhashable type: '{}'", self.type_name(v))))
            }
            Value::Tuple(t) => {
                let mut hs = Vec::with_capacity(t.items.len());
                for i in t.items.iter() {
                    hs.push(self.hash(i)?);
                }
                Ok(tuple_hash(hs.into_iter()))
            }
            Value::WeakRef(w) => {
                let key = Weak::as_ptr(w) as usize;
                if let Some(h) = self.weak_hashes.borrow().get(&key) {
                    return Ok(*h);
                }
                match w.upgrade().and_then(Value::from_any) {
                    Some(o) => {
                        let h = self.hash(&o)?;
                        self.weak_hashes.borrow_mut().insert(key, h);
                        Ok(h)
                    }
                    None => Err(self.type_error("weak object has gone away")),
                }
            }
            _ => Ok((v.id() >> 4) as u64),
        }
    }

    fn lookup_special_raw(&self, v: &Value, name: &str) -> Option<Value> {
        match v {
            Value::Instance(i) => lookup_class_str(&i.class, name, str_hash(name)),
            _ => None,
        }
    }

    fn needs_user_eq(&self, v: &Value) -> bool {
        match v {
            Value::Instance(i) => {
                lookup_class_str(&i.class, "__eq__", str_hash("__eq__")).is_some()
            }
            Value::Tuple(t) => t.items.iter().any(|x| self.needs_user_eq(x)),
            _ => false,
        }
    }

    /// Finds a key's slot in a table, running `__eq__` outside the borrow if needed.
    pub fn table_find(&self, t: &RefCell<Table>, h: u64, key: &Value) -> PyResult<Option<usize>> {
        if !self.needs_user_eq(key) {
            return Ok(t.borrow().find_native(h, key));
        }
        let cands = t.borrow().candidates(h);
        for (slot, k) in cands {
            if k.is(key) || self.eq(&k, key)? {
                return Ok(Some(slot));
            }
        }
        Ok(None)
    }

    /// `d.get(key)`
    pub fn dict_get(&self, d: &Gc<Dict>, key: &Value) -> PyResult<Option<Value>> {
        let h = self.hash(key)?;
        let slot = self.table_find(&d.t, h, key)?;
        Ok(slot.map(|s| d.t.borrow().value(s).clone()))
    }

    /// `d[key] = v`
    pub fn dict_set(&self, d: &Gc<Dict>, key: Value, v: Value) -> PyResult<()> {
        let h = self.hash(&key)?;
        let slot = self.table_find(&d.t, h, &key)?;
        let old = {
            let mut t = d.t.borrow_mut();
            match slot {
                Some(s) => Some(t.set_value(s, v)),
                None => {
                    t.insert_new(h, key, v);
                    None
                }
            }
        };
        drop(old);
        Ok(())
    }

    /// `del d[key]` / `d.pop(key)`: the removed value, if any.
    pub fn dict_del(&self, d: &Gc<Dict>, key: &Value) -> PyResult<Option<Value>> {
        let h = self.hash(key)?;
        let slot = self.table_find(&d.t, h, key)?;
        let old = slot.map(|s| d.t.borrow_mut().remove_at(s));
        Ok(old.map(|e| e.value))
    }

    /// `s.add(v)`
    pub fn set_add(&self, s: &Gc<Set>, v: Value) -> PyResult<()> {
        let h = self.hash(&v)?;
        if self.table_find(&s.t, h, &v)?.is_none() {
            s.t.borrow_mut().insert_new(h, v, Value::None);
        }
        Ok(())
    }

    /// `v in s`
    pub fn set_contains(&self, s: &Gc<Set>, v: &Value) -> PyResult<bool> {
        let h = self.hash(v)?;
        Ok(self.table_find(&s.t, h, v)?.is_some())
    }

    /// Key/value pairs of a mapping.
    pub fn items_of(&self, m: &Value) -> PyResult<Vec<(Value, Value)>> {
        match m {
            Value::Dict(d) => Ok(d
                .t
                .borrow()
                .iter()
                .map(|e| (e.key.clone(), e.value.clone()))
                .collect()),
            _ => {
                let keys = self.call_method(m, "keys", &[])?;
                let keys = self.collect(&keys)?;
                let mut out = Vec::new();
                for k in keys {
                    let v = self.getitem(m, &k)?;
                    out.push((k, v));
                }
                Ok(out)
            }
        }
    }

    // ------------------------------------------------------------ type queries

    /// `type(v)`
    pub fn class_of(&self, v: &Value) -> Gc<Class> {
        let t = &self.types;
        match v {
            Value::None => t.none.clone(),
            Value::Bool(_) => t.bool_.clone(),
            Value::Int(_) => t.int.clone(),
            Value::Float(_) => t.float.clone(),
            Value::Str(_) => t.str_.clone(),
            Value::List(_) => t.list.clone(),
            Value::Tuple(_) => t.tuple.clone(),
            Value::Dict(_) => t.dict.clone(),
            Value::Set(_) => t.set.clone(),
            Value::Instance(i) => i.class.clone(),
            Value::Class(_) => t.type_.clone(),
            Value::Function(_) => t.function.clone(),
            Value::Method(_) => t.method.clone(),
            Value::Builtin(_) => t.builtin_function.clone(),
            Value::Module(_) => t.module.clone(),
            Value::Cell(_) => t.cell.clone(),
            Value::WeakRef(_) => t.weakref.clone(),
            Value::Native(n) => match &n.kind {
                NativeKind::Range { .. } => t.range.clone(),
                NativeKind::Finalize(_) => t.finalize.clone(),
                NativeKind::WeakMethod { .. } => t.weakmethod.clone(),
                NativeKind::Object => t.object.clone(),
                _ => t.native.clone(),
            },
        }
    }

    /// `type(v).__name__`
    pub fn type_name(&self, v: &Value) -> Rc<str> {
        if let Value::Native(n) = v {
            return Rc::from(crate::modules::native_type_name(&n.kind));
        }
        self.class_of(v).name.clone()
    }

    /// `isinstance(v, cls)`
    pub fn isinstance(&self, v: &Value, cls: &Gc<Class>) -> bool {
        if cls.kind == Kind::Object {
            return true;
        }
        if cls.kind == Kind::Int && matches!(v, Value::Bool(_)) {
            return true;
        }
        is_subclass(&self.class_of(v), cls)
    }

    // ------------------------------------------------------------ imports

    fn import(&self, name: &str) -> PyResult {
        if let Some(m) = self.modules.borrow().get(name) {
            return Ok(m.clone());
        }
        let m = crate::modules::make_module(self, name)?;
        self.modules.borrow_mut().insert(Rc::from(name), m.clone());
        Ok(m)
    }

    /// The value of `truth(v)`.
    pub fn truthy(&self, v: &Value) -> PyResult<bool> {
        Ok(match v {
            Value::None => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.items.borrow().is_empty(),
            Value::Tuple(t) => !t.items.is_empty(),
            Value::Dict(d) => !d.t.borrow().is_empty(),
            Value::Set(s) => !s.t.borrow().is_empty(),
            Value::Instance(_) => {
                if let Some(m) = self.lookup_special(v, "__bool__") {
                    let r = self.call_with_self(&m, v, &[])?;
                    return self.truthy(&r);
                }
                if let Some(m) = self.lookup_special(v, "__len__") {
                    let r = self.call_with_self(&m, v, &[])?;
                    return self.truthy(&r);
                }
                true
            }
            Value::Native(n) => match &n.kind {
                NativeKind::Range { start, stop, step } => {
                    crate::builtins::range_len(*start, *stop, *step) > 0
                }
                NativeKind::WeakValueDict(_)
                | NativeKind::WeakKeyDict(_)
                | NativeKind::WeakSet(_)
                | NativeKind::Proxy(_) => {
                    let l = crate::builtins::len(self, v)?;
                    l > 0
                }
                _ => true,
            },
            _ => true,
        })
    }

    // ------------------------------------------------------------ operators

    /// `a == b`
    pub fn eq(&self, a: &Value, b: &Value) -> PyResult<bool> {
        for (x, y) in [(a, b), (b, a)] {
            if let Value::Native(n) = x {
                if let NativeKind::Proxy(p) = &n.kind {
                    let t = crate::modules::proxy_target(self, p)?;
                    return self.eq(&t, y);
                }
            }
        }
        match (a, b) {
            (Value::Int(x), Value::Int(y)) => Ok(x == y),
            (Value::Str(x), Value::Str(y)) => Ok(x == y),
            (Value::List(x), Value::List(y)) => {
                if Gc::ptr_eq(x, y) {
                    return Ok(true);
                }
                let (xa, ya) = (x.items.borrow().clone(), y.items.borrow().clone());
                self.seq_eq(&xa, &ya)
            }
            (Value::Tuple(x), Value::Tuple(y)) => self.seq_eq(&x.items, &y.items),
            (Value::Dict(x), Value::Dict(y)) => {
                if x.t.borrow().len() != y.t.borrow().len() {
                    return Ok(false);
                }
                let items: Vec<(Value, Value)> =
                    x.t.borrow()
                        .iter()
                        .map(|e| (e.key.clone(), e.value.clone()))
                        .collect();
                for (k, v) in items {
                    match self.dict_get(y, &k)? {
                        Some(v2) => {
                            if !self.eq(&v, &v2)? {
                                return Ok(false);
                            }
                        }
                        None => return Ok(false),
                    }
                }
                Ok(true)
            }
            (Value::Set(x), Value::Set(y)) => {
                if x.t.borrow().len() != y.t.borrow().len() {
                    return Ok(false);
                }
                let keys = x.t.borrow().keys();
                for k in keys {
                    if !self.set_contains(y, &k)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            (Value::Instance(_), _) | (_, Value::Instance(_)) => {
                if let Some(m) = self.lookup_special(a, "__eq__") {
                    let r = self.call_with_self(&m, a, std::slice::from_ref(b))?;
                    if !is_not_implemented(&r) {
                        return self.truthy(&r);
                    }
                }
                if let Some(m) = self.lookup_special(b, "__eq__") {
                    let r = self.call_with_self(&m, b, std::slice::from_ref(a))?;
                    if !is_not_implemented(&r) {
                        return self.truthy(&r);
                    }
                }
                Ok(a.is(b))
            }
            (Value::WeakRef(x), Value::WeakRef(y)) => {
                match (
                    x.upgrade().and_then(Value::from_any),
                    y.upgrade().and_then(Value::from_any),
                ) {
                    (Some(p), Some(q)) => self.eq(&p, &q),
                    _ => Ok(x.ptr_eq(y)),
                }
            }
            (Value::Method(x), Value::Method(y)) => Ok(x.recv.is(&y.recv) && x.func.is(&y.func)),
            _ => Ok(native_eq(a, b)),
        }
    }

    fn seq_eq(&self, a: &[Value], b: &[Value]) -> PyResult<bool> {
        if a.len() != b.len() {
            return Ok(false);
        }
        for (x, y) in a.iter().zip(b.iter()) {
            if !(x.is(y) || self.eq(x, y)?) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// A comparison operator.
    pub fn compare(&self, op: CmpOp, a: &Value, b: &Value) -> PyResult<bool> {
        match op {
            CmpOp::Eq => self.eq(a, b),
            CmpOp::Ne => {
                if let Some(m) = self.lookup_special(a, "__ne__") {
                    let r = self.call_with_self(&m, a, std::slice::from_ref(b))?;
                    if !is_not_implemented(&r) {
                        return self.truthy(&r);
                    }
                }
                Ok(!self.eq(a, b)?)
            }
            CmpOp::Is => Ok(a.is(b)),
            CmpOp::IsNot => Ok(!a.is(b)),
            CmpOp::In => self.contains(b, a),
            CmpOp::NotIn => Ok(!self.contains(b, a)?),
            CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge => {
                let o = self.order(a, b, op)?;
                Ok(match op {
                    CmpOp::Lt => o == std::cmp::Ordering::Less,
                    CmpOp::Le => o != std::cmp::Ordering::Greater,
                    CmpOp::Gt => o == std::cmp::Ordering::Greater,
                    _ => o != std::cmp::Ordering::Less,
                })
            }
        }
    }

    /// Ordering of two values (`<` and friends; `sorted`).
    pub fn order(&self, a: &Value, b: &Value, op: CmpOp) -> PyResult<std::cmp::Ordering> {
        use std::cmp::Ordering as O;
        let num = |v: &Value| -> Option<f64> {
            match v {
                Value::Int(i) => Some(*i as f64),
                Value::Bool(b) => Some(*b as i64 as f64),
                Value::Float(f) => Some(*f),
                _ => None,
            }
        };
        match (a, b) {
            (Value::Int(x), Value::Int(y)) => return Ok(x.cmp(y)),
            (Value::Str(x), Value::Str(y)) => return Ok(x.cmp(y)),
            _ => {}
        }
        if let (Some(x), Some(y)) = (num(a), num(b)) {
            return Ok(x.partial_cmp(&y).unwrap_or(O::Equal));
        }
        match (a, b) {
            (Value::List(_), Value::List(_)) | (Value::Tuple(_), Value::Tuple(_)) => {
                let x = self.collect(a)?;
                let y = self.collect(b)?;
                for (p, q) in x.iter().zip(y.iter()) {
                    if !self.eq(p, q)? {
                        return self.order(p, q, op);
                    }
                }
                return Ok(x.len().cmp(&y.len()));
            }
            (Value::Set(x), Value::Set(y)) => {
                let (lx, ly) = (x.t.borrow().len(), y.t.borrow().len());
                let keys = x.t.borrow().keys();
                let mut sub = true;
                for k in keys {
                    if !self.set_contains(y, &k)? {
                        sub = false;
                        break;
                    }
                }
                return Ok(if sub && lx == ly {
                    O::Equal
                } else if sub {
                    O::Less
                } else {
                    O::Greater
                });
            }
            _ => {}
        }
        let (name, rname) = match op {
            CmpOp::Lt => ("__lt__", "__gt__"),
            CmpOp::Le => ("__le__", "__ge__"),
            CmpOp::Gt => ("__gt__", "__lt__"),
            _ => ("__ge__", "__le__"),
        };
        if let Some(m) = self.lookup_special(a, name) {
            let r = self.call_with_self(&m, a, std::slice::from_ref(b))?;
            if !is_not_implemented(&r) {
                let t = self.truthy(&r)?;
                return Ok(truth_to_order(op, t));
            }
        }
        if let Some(m) = self.lookup_special(b, rname) {
            let r = self.call_with_self(&m, b, std::slice::from_ref(a))?;
            if !is_not_implemented(&r) {
                let t = self.truthy(&r)?;
                return Ok(truth_to_order(op, t));
            }
        }
        let sym = match op {
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            _ => ">=",
        };
        Err(self.type_error(format!(
            "'{sym}' not supported between instances of '{}' and '{}'",
            self.type_name(a),
            self.type_name(b)
        )))
    }

    /// `needle in container`
    pub fn contains(&self, container: &Value, needle: &Value) -> PyResult<bool> {
        match container {
            Value::Str(s) => match needle {
                Value::Str(n) => Ok(s.contains(&**n)),
                _ => Err(self.type_error("'in <string>' requires string as left operand")),
            },
            Value::Dict(d) => Ok(self.dict_get(d, needle)?.is_some()),
            Value::Set(s) => self.set_contains(s, needle),
            Value::List(_) | Value::Tuple(_) => {
                let items = self.collect(container)?;
                for i in items {
                    if i.is(needle) || self.eq(&i, needle)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Value::Instance(_) => {
                if let Some(m) = self.lookup_special(container, "__contains__") {
                    let r = self.call_with_self(&m, container, std::slice::from_ref(needle))?;
                    return self.truthy(&r);
                }
                let items = self.collect(container)?;
                for i in items {
                    if i.is(needle) || self.eq(&i, needle)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Value::Native(n) => crate::modules::native_contains(self, n, needle),
            _ => Err(self.type_error(format!(
                "argument of type '{}' is not iterable",
                self.type_name(container)
            ))),
        }
    }

    fn unary(&self, op: UnOp, a: &Value) -> PyResult {
        match (op, a) {
            (UnOp::Neg, Value::Int(i)) => i
                .checked_neg()
                .map(Value::Int)
                .ok_or_else(|| self.overflow()),
            (UnOp::Neg, Value::Bool(b)) => Ok(Value::Int(-(*b as i64))),
            (UnOp::Neg, Value::Float(f)) => Ok(Value::Float(-f)),
            (UnOp::Pos, Value::Int(_) | Value::Float(_)) => Ok(a.clone()),
            (UnOp::Pos, Value::Bool(b)) => Ok(Value::Int(*b as i64)),
            (UnOp::Invert, Value::Int(i)) => Ok(Value::Int(!i)),
            (UnOp::Invert, Value::Bool(b)) => Ok(Value::Int(!(*b as i64))),
            (_, Value::Instance(_)) => {
                let name = match op {
                    UnOp::Neg => "__neg__",
                    UnOp::Pos => "__pos__",
                    UnOp::Invert => "__invert__",
                };
                match self.lookup_special(a, name) {
                    Some(m) => self.call_with_self(&m, a, &[]),
                    None => Err(self.type_error(format!(
                        "bad operand type for unary {}: '{}'",
                        match op {
                            UnOp::Neg => "-",
                            UnOp::Pos => "+",
                            UnOp::Invert => "~",
                        },
                        self.type_name(a)
                    ))),
                }
            }
            _ => Err(self.type_error(format!(
                "bad operand type for unary {}: '{}'",
                match op {
                    UnOp::Neg => "-",
                    UnOp::Pos => "+",
                    UnOp::Invert => "~",
                },
                self.type_name(a)
            ))),
        }
    }

    /// `OverflowError`
    pub fn overflow(&self) -> Exc {
        self.exc(
            "OverflowError",
            "integer overflow: minipy ints are 64-bit (arbitrary precision is outside its subset)",
        )
    }

    /// A binary operator.
    pub fn binop(&self, op: BinOp, a: &Value, b: &Value) -> PyResult {
        if let Some(v) = crate::builtins::arith(self, op, a, b)? {
            return Ok(v);
        }
        let name = binop_name(op);
        if let Some(m) = self.lookup_special(a, name) {
            let r = self.call_with_self(&m, a, std::slice::from_ref(b))?;
            if !is_not_implemented(&r) {
                return Ok(r);
            }
        }
        let rname = format!("__r{}", &name[2..]);
        if let Some(m) = self.lookup_special(b, &rname) {
            let r = self.call_with_self(&m, b, std::slice::from_ref(a))?;
            if !is_not_implemented(&r) {
                return Ok(r);
            }
        }
        Err(self.type_error(format!(
            "unsupported operand type(s) for {}: '{}' and '{}'",
            binop_sym(op),
            self.type_name(a),
            self.type_name(b)
        )))
    }

    // ------------------------------------------------------------ items

    /// `o[i]`
    pub fn getitem(&self, o: &Value, i: &Value) -> PyResult {
        crate::builtins::getitem(self, o, i)
    }

    /// `o[i] = v`
    pub fn setitem(&self, o: &Value, i: Value, v: Value) -> PyResult<()> {
        crate::builtins::setitem(self, o, i, v)
    }

    /// `del o[i]`
    pub fn delitem(&self, o: &Value, i: &Value) -> PyResult<()> {
        crate::builtins::delitem(self, o, i)
    }

    // ------------------------------------------------------------ iteration

    /// `iter(v)` as a Rust-side iterator state.
    pub fn iter(&self, v: &Value) -> PyResult<IterState> {
        Ok(match v {
            Value::List(_) | Value::Tuple(_) => IterState::Seq(v.clone(), 0),
            Value::Str(s) => IterState::Str(s.clone(), 0),
            Value::Dict(d) => IterState::Vec(d.t.borrow().keys(), 0),
            Value::Set(s) => IterState::Vec(crate::builtins::set_order(&s.t.borrow()), 0),
            Value::Native(n) => match &n.kind {
                NativeKind::Range { start, stop, step } => IterState::Range(*start, *stop, *step),
                NativeKind::Iter(_) => IterState::User(v.clone()),
                _ => IterState::Vec(crate::modules::native_iter(self, n)?, 0),
            },
            Value::Instance(_) => {
                if let Some(m) = self.lookup_special(v, "__iter__") {
                    let it = self.call_with_self(&m, v, &[])?;
                    IterState::User(it)
                } else if self.lookup_special(v, "__getitem__").is_some() {
                    let mut out = Vec::new();
                    let mut i = 0;
                    loop {
                        match self.getitem(v, &Value::Int(i)) {
                            Ok(x) => out.push(x),
                            Err(e)
                                if is_subclass(
                                    &e.0.class,
                                    &self.types.exceptions["IndexError"],
                                ) =>
                            {
                                break
                            }
                            Err(e) => return Err(e),
                        }
                        i += 1;
                    }
                    IterState::Vec(out, 0)
                } else {
                    return Err(
                        self.type_error(format!("'{}' object is not iterable", self.type_name(v)))
                    );
                }
            }
            _ => {
                return Err(
                    self.type_error(format!("'{}' object is not iterable", self.type_name(v)))
                )
            }
        })
    }

    /// The next item of an iterator state.
    pub fn next(&self, it: &mut IterState) -> PyResult<Option<Value>> {
        Ok(match it {
            IterState::Seq(v, i) => {
                let item = match v {
                    Value::List(l) => l.items.borrow().get(*i).cloned(),
                    Value::Tuple(t) => t.items.get(*i).cloned(),
                    _ => None,
                };
                *i += 1;
                if item.is_none() {
                    *it = IterState::Done;
                }
                item
            }
            IterState::Range(cur, stop, step) => {
                if (*step > 0 && *cur < *stop) || (*step < 0 && *cur > *stop) {
                    let v = *cur;
                    *cur += *step;
                    Some(Value::Int(v))
                } else {
                    None
                }
            }
            IterState::Vec(items, i) => {
                let item = items.get_mut(*i).map(|x| std::mem::replace(x, Value::None));
                *i += 1;
                item
            }
            IterState::Str(s, i) => {
                let c = s[*i..].chars().next();
                match c {
                    Some(c) => {
                        *i += c.len_utf8();
                        Some(Value::Str(Rc::from(c.to_string().as_str())))
                    }
                    None => None,
                }
            }
            IterState::User(obj) => {
                if let Value::Native(n) = obj {
                    if let NativeKind::Iter(st) = &n.kind {
                        let mut inner = std::mem::replace(&mut *st.borrow_mut(), IterState::Done);
                        let r = self.next(&mut inner);
                        *st.borrow_mut() = inner;
                        return r;
                    }
                }
                let obj = obj.clone();
                match self.call_method(&obj, "__next__", &[]) {
                    Ok(v) => Some(v),
                    Err(e) if is_subclass(&e.0.class, &self.types.exceptions["StopIteration"]) => {
                        None
                    }
                    Err(e) => return Err(e),
                }
            }
            IterState::Done => None,
        })
    }

    /// All items of an iterable.
    pub fn collect(&self, v: &Value) -> PyResult<Vec<Value>> {
        match v {
            Value::List(l) => return Ok(l.items.borrow().clone()),
            Value::Tuple(t) => return Ok(t.items.to_vec()),
            _ => {}
        }
        let mut it = self.iter(v)?;
        let mut out = Vec::new();
        while let Some(x) = self.next(&mut it)? {
            out.push(x);
        }
        Ok(out)
    }

    // ------------------------------------------------------------ str / repr

    /// `repr(v)`
    pub fn repr(&self, v: &Value) -> PyResult<String> {
        crate::builtins::repr(self, v)
    }

    /// `str(v)`
    pub fn to_str(&self, v: &Value) -> PyResult<String> {
        crate::builtins::to_str(self, v)
    }
}

/// Whether `c` is `base` or derives from it.
pub fn is_subclass(c: &Gc<Class>, base: &Gc<Class>) -> bool {
    let mut cur = Some(c.clone());
    while let Some(k) = cur {
        if Gc::ptr_eq(&k, base) {
            return true;
        }
        cur = k.base.clone();
    }
    false
}

/// Attribute lookup along the class chain.
pub fn lookup_class(c: &Gc<Class>, n: &crate::compile::Name) -> Option<Value> {
    lookup_class_str(c, &n.s, n.h)
}

/// [`lookup_class`] by text and hash (no interned name needed), through the class's cache.
pub fn lookup_class_str(c: &Gc<Class>, name: &str, h: u64) -> Option<Value> {
    lookup_cached(c, name, h, 0)
}

/// [`lookup_class`] of a literal name: found in the cache by the literal's address (a static
/// address is never reused for other text), no string comparison.
pub fn lookup_class_static(c: &Gc<Class>, name: &'static str) -> Option<Value> {
    lookup_cached(c, name, str_hash(name), name.as_ptr() as usize)
}

fn lookup_cached(c: &Gc<Class>, name: &str, h: u64, stat: usize) -> Option<Value> {
    let epoch = crate::table::class_epoch();
    let found = {
        let mut cache = c.cache.borrow_mut();
        if cache.epoch != epoch {
            cache.entries.clear();
            cache.epoch = epoch;
        }
        let len = name.len();
        cache
            .entries
            .iter_mut()
            .find(|(eh, s, sp, _)| {
                *eh == h
                    && s.len() == len
                    && ((stat != 0 && *sp == stat)
                        || std::ptr::eq(s.as_ptr(), name.as_ptr())
                        || &**s == name)
            })
            .map(|e| {
                if stat != 0 {
                    e.2 = stat;
                }
                e.3
            })
    };
    let loc = match found {
        Some(loc) => loc,
        None => {
            let loc = find_in_chain(c, name, h);
            let mut cache = c.cache.borrow_mut();
            if cache.entries.len() >= 32 {
                cache.entries.clear();
            }
            cache.entries.push((h, Rc::from(name), stat, loc));
            loc
        }
    };
    let (depth, slot) = loc?;
    let mut k = c;
    for _ in 0..depth {
        k = k.base.as_ref().expect("cached base chain");
    }
    let t = k.dict.t.borrow();
    Some(t.value(slot).clone())
}

/// Where a name is along a class's base chain: (depth, slot).
fn find_in_chain(c: &Gc<Class>, name: &str, h: u64) -> Option<(u32, usize)> {
    let mut cur: Option<&Gc<Class>> = Some(c);
    let mut depth = 0;
    while let Some(k) = cur {
        if let Some(s) = k.dict.t.borrow().find_str(h, name) {
            return Some((depth, s));
        }
        depth += 1;
        cur = k.base.as_ref();
    }
    None
}

/// `int op int` for the common operators, when it does not overflow.
#[inline]
fn int_fast(op: BinOp, a: &Value, b: &Value) -> Option<Value> {
    if let (Value::Int(x), Value::Int(y)) = (a, b) {
        let r = match op {
            BinOp::Add => x.checked_add(*y),
            BinOp::Sub => x.checked_sub(*y),
            BinOp::Mul => x.checked_mul(*y),
            _ => None,
        };
        return r.map(Value::Int);
    }
    None
}

/// Comparisons of two ints, and identity tests, without the general machinery.
#[inline]
fn cmp_fast(op: CmpOp, a: &Value, b: &Value) -> Option<bool> {
    match op {
        CmpOp::Is => return Some(a.is(b)),
        CmpOp::IsNot => return Some(!a.is(b)),
        _ => {}
    }
    if let (Value::Int(x), Value::Int(y)) = (a, b) {
        return Some(match op {
            CmpOp::Eq => x == y,
            CmpOp::Ne => x != y,
            CmpOp::Lt => x < y,
            CmpOp::Le => x <= y,
            CmpOp::Gt => x > y,
            CmpOp::Ge => x >= y,
            _ => return None,
        });
    }
    None
}

fn is_not_implemented(v: &Value) -> bool {
    matches!(v, Value::Builtin(b) if *b == crate::builtins::NOT_IMPLEMENTED)
}

fn truth_to_order(op: CmpOp, t: bool) -> std::cmp::Ordering {
    use std::cmp::Ordering as O;
    match (op, t) {
        (CmpOp::Lt, true) => O::Less,
        (CmpOp::Lt, false) => O::Equal,
        (CmpOp::Le, true) => O::Equal,
        (CmpOp::Le, false) => O::Greater,
        (CmpOp::Gt, true) => O::Greater,
        (CmpOp::Gt, false) => O::Equal,
        (_, true) => O::Equal,
        (_, false) => O::Less,
    }
}

fn target_as_expr(t: &Target) -> Expr {
    match t {
        Target::Local(i) => Expr::Local(*i),
        Target::Cell(i) => Expr::Cell(*i),
        Target::Global(n) => Expr::Global(n.clone()),
        Target::ClassStore(n) => Expr::ClassLoad(n.clone(), None),
        _ => Expr::Const(Value::None),
    }
}

/// `__add__` and friends.
pub fn binop_name(op: BinOp) -> &'static str {
    match op {
        BinOp::Add => "__add__",
        BinOp::Sub => "__sub__",
        BinOp::Mul => "__mul__",
        BinOp::Div => "__truediv__",
        BinOp::FloorDiv => "__floordiv__",
        BinOp::Mod => "__mod__",
        BinOp::Pow => "__pow__",
        BinOp::LShift => "__lshift__",
        BinOp::RShift => "__rshift__",
        BinOp::BitOr => "__or__",
        BinOp::BitXor => "__xor__",
        BinOp::BitAnd => "__and__",
        BinOp::MatMul => "__matmul__",
    }
}

/// `+` and friends.
pub fn binop_sym(op: BinOp) -> &'static str {
    match op {
        BinOp::Add => "+",
        BinOp::Sub => "-",
        BinOp::Mul => "*",
        BinOp::Div => "/",
        BinOp::FloorDiv => "//",
        BinOp::Mod => "%",
        BinOp::Pow => "** or pow()",
        BinOp::LShift => "<<",
        BinOp::RShift => ">>",
        BinOp::BitOr => "|",
        BinOp::BitXor => "^",
        BinOp::BitAnd => "&",
        BinOp::MatMul => "@",
    }
}

impl Finalize for Instance {
    /// `type(self).__del__(self)`, run by the interpreter the heap carries.
    fn finalize(this: &Gc<Self>) {
        let Some(it) = Gc::user_data::<Interp>(this) else {
            return;
        };
        let Some(del) = lookup_class_static(&this.class, "__del__") else {
            return;
        };
        let me = Value::Instance(this.clone());
        if let Err(e) = it.call_with_self(&del, &me, &[]) {
            let what = it.repr(&del).unwrap_or_else(|_| "__del__".into());
            drop(me);
            it.unraisable(&what, e);
        }
    }

    /// Asked once, at allocation: instances of classes without `__del__` pay nothing.
    fn wants_finalizer(&self) -> bool {
        let mut cur = Some(&self.class);
        while let Some(k) = cur {
            match k.dict.t.try_borrow() {
                Ok(t) => {
                    if t.find_str(str_hash("__del__"), "__del__").is_some() {
                        return true;
                    }
                }
                Err(_) => return false,
            }
            cur = k.base.as_ref();
        }
        false
    }
}

impl Frame<'_> {
    /// Whether this is a module-level frame.
    pub fn is_module(&self) -> bool {
        self.code.kind == ScopeKind::Module
    }
}

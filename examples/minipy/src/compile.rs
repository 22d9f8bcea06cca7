//! From rustpython's AST to minipy's IR: a tree of [`Expr`] and [`Stmt`] whose names are
//! resolved once, at compile time, to local slots, cell slots, globals or class-namespace
//! lookups (the same scoping rules as CPython's symtable), with attribute and global names
//! interned with their hash. The AST is dropped after compilation; calls never touch it.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use rustpython_parser::ast::{self, Ranged};

use crate::value::{str_hash, Value};

/// An interned name with its hash (attribute names, globals).
#[derive(Clone, Debug)]
pub struct Name {
    /// The text.
    pub s: Rc<str>,
    /// `str_hash(s)`
    pub h: u64,
}

impl Name {
    /// A name made at run time (not interned).
    pub fn of(s: &str) -> Name {
        Name {
            s: Rc::from(s),
            h: str_hash(s),
        }
    }

    fn new(s: &str, interner: &mut HashMap<String, Rc<str>>) -> Name {
        let s = interner
            .entry(s.to_string())
            .or_insert_with(|| Rc::from(s))
            .clone();
        let h = str_hash(&s);
        Name { s, h }
    }
}

/// Binary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
    Mod,
    Pow,
    LShift,
    RShift,
    BitOr,
    BitXor,
    BitAnd,
    MatMul,
}

/// Unary operators (`not` is [`Expr::Not`]).
#[derive(Clone, Copy, Debug)]
#[allow(missing_docs)]
pub enum UnOp {
    Neg,
    Pos,
    Invert,
}

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Is,
    IsNot,
    In,
    NotIn,
}

/// An element of a display or call: `x` or `*x`.
#[allow(missing_docs)]
pub enum Elt {
    One(Expr),
    Star(Expr),
}

/// Call arguments.
pub struct Args {
    /// Positional (possibly starred).
    pub pos: Vec<Elt>,
    /// Keyword arguments.
    pub kw: Vec<(Name, Expr)>,
    /// `**mapping`
    pub kwstar: Option<Expr>,
    /// Only plain positional arguments (no `*`, no keywords).
    pub simple: bool,
}

/// Part of an f-string.
pub enum FPart {
    /// Literal text.
    Lit(Rc<str>),
    /// `{value!conv:spec}`
    Val(Expr, u8, Option<Vec<FPart>>),
}

/// Kind of comprehension.
#[derive(Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum CompKind {
    List,
    Set,
    Dict,
    Gen,
}

/// One `for … in … if …` clause of a comprehension.
pub struct CompGen {
    /// Loop target.
    pub target: Target,
    /// Iterable (the first one is the comprehension's argument, `Local(0)`).
    pub iter: Expr,
    /// Conditions.
    pub ifs: Vec<Expr>,
}

/// A comprehension: its own code (scope), run with the first iterable as argument.
pub struct CompExpr {
    /// The comprehension's code (body: one [`StmtKind::Comp`]).
    pub code: Rc<Code>,
    /// Cells of the current frame passed as its free variables.
    pub closure: Vec<u32>,
    /// The first iterable, evaluated in the current scope.
    pub iter: Expr,
}

/// An expression.
#[allow(missing_docs)]
pub enum Expr {
    Const(Value),
    Local(u32),
    Cell(u32),
    Global(Name),
    /// A load in a class body: namespace, then the cell if free here, then globals.
    ClassLoad(Name, Option<u32>),
    Attr(Box<Expr>, Name),
    Subscript(Box<Expr>, Box<Expr>),
    Slice(Option<Box<Expr>>, Option<Box<Expr>>, Option<Box<Expr>>),
    Call(Box<Expr>, Box<Args>, u32),
    CallMethod(Box<Expr>, Name, Box<Args>, u32),
    /// `super()` in a method: the `__class__` cell and the first argument's slot or cell.
    Super(u32, Box<Expr>),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    Unary(UnOp, Box<Expr>),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Compare(Box<Expr>, Vec<(CmpOp, Expr)>),
    IfExp(Box<Expr>, Box<Expr>, Box<Expr>),
    List(Vec<Elt>),
    Tuple(Vec<Elt>),
    Set(Vec<Elt>),
    Dict(Vec<(Option<Expr>, Expr)>),
    Comp(Box<CompExpr>),
    Lambda(Rc<FuncDef>),
    FStr(Vec<FPart>),
    Walrus(Box<Target>, Box<Expr>),
}

/// An assignment target.
#[allow(missing_docs)]
pub enum Target {
    Local(u32),
    Cell(u32),
    Global(Name),
    ClassStore(Name),
    Attr(Expr, Name),
    Subscript(Expr, Expr),
    /// Unpacking, with the index of the starred target if any.
    Seq(Vec<Target>, Option<usize>),
}

/// An `except` clause.
pub struct Handler {
    /// The class (or tuple of classes) matched; `None` catches everything.
    pub typ: Option<Expr>,
    /// `as name`
    pub name: Option<Target>,
    /// Body.
    pub body: Vec<Stmt>,
}

/// A function definition (also lambdas).
pub struct FuncDef {
    /// Code.
    pub code: Rc<Code>,
    /// Positional defaults.
    pub defaults: Vec<Expr>,
    /// Keyword-only defaults.
    pub kw_defaults: Vec<Option<Expr>>,
    /// Cells of the defining frame captured as free variables.
    pub closure: Vec<u32>,
}

/// A statement with its line.
pub struct Stmt {
    /// Source line.
    pub line: u32,
    /// What it does.
    pub kind: StmtKind,
}

/// Statements.
#[allow(missing_docs)]
pub enum StmtKind {
    Expr(Expr),
    Assign(Vec<Target>, Expr),
    AugAssign(Target, BinOp, Expr),
    Del(Vec<Target>),
    If(Expr, Vec<Stmt>, Vec<Stmt>),
    While(Expr, Vec<Stmt>, Vec<Stmt>),
    For(Target, Expr, Vec<Stmt>, Vec<Stmt>),
    Break,
    Continue,
    Pass,
    Return(Option<Expr>),
    Raise(Option<Expr>, Option<Expr>),
    Try(Vec<Stmt>, Vec<Handler>, Vec<Stmt>, Vec<Stmt>),
    FuncDef(Rc<FuncDef>, Vec<Expr>, Target),
    ClassDef {
        name: Rc<str>,
        bases: Vec<Expr>,
        code: Rc<Code>,
        closure: Vec<u32>,
        decorators: Vec<Expr>,
        target: Target,
    },
    Import(Rc<str>, Target),
    ImportFrom(Rc<str>, Vec<(Name, Target)>),
    Assert(Expr, Option<Expr>),
    With(Expr, Option<Target>, Vec<Stmt>),
    /// The body of a comprehension's code.
    Comp {
        kind: CompKind,
        gens: Vec<CompGen>,
        elt: Expr,
        val: Option<Expr>,
    },
}

/// What kind of scope a code object is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[allow(missing_docs)]
pub enum ScopeKind {
    Module,
    Function,
    Class,
    Comprehension,
}

/// A compiled scope: module, function, class body or comprehension.
pub struct Code {
    /// `__name__`
    pub name: Rc<str>,
    /// `__qualname__`
    pub qualname: Rc<str>,
    /// Kind.
    pub kind: ScopeKind,
    /// Number of positional parameters.
    pub argcount: usize,
    /// Number of keyword-only parameters (after the positional ones).
    pub kwonly: usize,
    /// Slot of `*args`.
    pub vararg: Option<u32>,
    /// Slot of `**kwargs`.
    pub kwarg: Option<u32>,
    /// Local names by slot (parameters first).
    pub local_names: Vec<Rc<str>>,
    /// Cell variables (own), then free variables.
    pub cell_names: Vec<Rc<str>>,
    /// Number of own cells.
    pub ncells: usize,
    /// Parameters that live in cells: (slot, cell).
    pub cell_params: Vec<(u32, u32)>,
    /// In a class body, the `__class__` cell.
    pub class_cell: Option<u32>,
    /// Statements.
    pub body: Vec<Stmt>,
    /// First line.
    pub line: u32,
}

/// A compile error (syntax outside the subset).
#[derive(Debug)]
pub struct CompileError {
    /// The message (`NotImplementedError: … at line N`).
    pub msg: String,
    /// Line.
    pub line: u32,
}

type CResult<T> = Result<T, CompileError>;

// ---------------------------------------------------------------- symbol tables

#[derive(Default)]
struct Sym {
    kind: Option<ScopeKind>,
    params: Vec<String>,
    order: Vec<String>,
    bound: HashSet<String>,
    used: HashSet<String>,
    globals: HashSet<String>,
    nonlocals: HashSet<String>,
    children: Vec<Sym>,
    // results
    locals: HashSet<String>,
    cells: Vec<String>,
    frees: Vec<String>,
}

impl Sym {
    fn new(kind: ScopeKind) -> Sym {
        Sym {
            kind: Some(kind),
            ..Default::default()
        }
    }
    fn kind(&self) -> ScopeKind {
        self.kind.unwrap_or(ScopeKind::Module)
    }
    fn bind(&mut self, n: &str) {
        if self.bound.insert(n.to_string()) && !self.order.iter().any(|o| o == n) {
            self.order.push(n.to_string());
        }
    }
    fn use_(&mut self, n: &str) {
        self.used.insert(n.to_string());
    }
}

struct SymBuilder {
    stack: Vec<Sym>,
}

impl SymBuilder {
    fn cur(&mut self) -> &mut Sym {
        self.stack.last_mut().expect("scope")
    }

    fn push(&mut self, s: Sym) {
        self.stack.push(s);
    }

    fn pop(&mut self) {
        let s = self.stack.pop().expect("scope");
        self.cur().children.push(s);
    }

    fn args(&mut self, a: &ast::Arguments) {
        for d in a
            .posonlyargs
            .iter()
            .chain(a.args.iter())
            .chain(a.kwonlyargs.iter())
        {
            if let Some(e) = &d.default {
                self.expr(e);
            }
        }
    }

    fn params(&mut self, a: &ast::Arguments) {
        let s = self.cur();
        for d in a.posonlyargs.iter().chain(a.args.iter()) {
            s.params.push(d.def.arg.to_string());
        }
        for d in a.kwonlyargs.iter() {
            s.params.push(d.def.arg.to_string());
        }
        if let Some(v) = &a.vararg {
            s.params.push(v.arg.to_string());
        }
        if let Some(v) = &a.kwarg {
            s.params.push(v.arg.to_string());
        }
        let ps = s.params.clone();
        for p in ps {
            s.bind(&p);
        }
    }

    fn stmts(&mut self, b: &[ast::Stmt]) {
        for s in b {
            self.stmt(s);
        }
    }

    fn stmt(&mut self, s: &ast::Stmt) {
        use ast::Stmt as S;
        match s {
            S::FunctionDef(f) => {
                for d in &f.decorator_list {
                    self.expr(d);
                }
                self.args(&f.args);
                self.cur().bind(&f.name);
                self.push(Sym::new(ScopeKind::Function));
                self.params(&f.args);
                self.stmts(&f.body);
                self.pop();
            }
            S::ClassDef(c) => {
                for d in &c.decorator_list {
                    self.expr(d);
                }
                for b in &c.bases {
                    self.expr(b);
                }
                self.cur().bind(&c.name);
                self.push(Sym::new(ScopeKind::Class));
                self.stmts(&c.body);
                self.pop();
            }
            S::Return(r) => {
                if let Some(v) = &r.value {
                    self.expr(v);
                }
            }
            S::Delete(d) => {
                for t in &d.targets {
                    self.target(t);
                }
            }
            S::Assign(a) => {
                self.expr(&a.value);
                for t in &a.targets {
                    self.target(t);
                }
            }
            S::AugAssign(a) => {
                self.expr(&a.value);
                if let ast::Expr::Name(n) = &*a.target {
                    self.cur().use_(&n.id);
                }
                self.target(&a.target);
            }
            S::AnnAssign(a) => {
                if let Some(v) = &a.value {
                    self.expr(v);
                }
                self.target(&a.target);
            }
            S::For(f) => {
                self.expr(&f.iter);
                self.target(&f.target);
                self.stmts(&f.body);
                self.stmts(&f.orelse);
            }
            S::While(w) => {
                self.expr(&w.test);
                self.stmts(&w.body);
                self.stmts(&w.orelse);
            }
            S::If(i) => {
                self.expr(&i.test);
                self.stmts(&i.body);
                self.stmts(&i.orelse);
            }
            S::With(w) => {
                for it in &w.items {
                    self.expr(&it.context_expr);
                    if let Some(v) = &it.optional_vars {
                        self.target(v);
                    }
                }
                self.stmts(&w.body);
            }
            S::Raise(r) => {
                if let Some(e) = &r.exc {
                    self.expr(e);
                }
                if let Some(e) = &r.cause {
                    self.expr(e);
                }
            }
            S::Try(t) => {
                self.stmts(&t.body);
                for h in &t.handlers {
                    let ast::ExceptHandler::ExceptHandler(h) = h;
                    if let Some(e) = &h.type_ {
                        self.expr(e);
                    }
                    if let Some(n) = &h.name {
                        self.cur().bind(n);
                    }
                    self.stmts(&h.body);
                }
                self.stmts(&t.orelse);
                self.stmts(&t.finalbody);
            }
            S::Assert(a) => {
                self.expr(&a.test);
                if let Some(m) = &a.msg {
                    self.expr(m);
                }
            }
            S::Import(i) => {
                for a in &i.names {
                    let n = match &a.asname {
                        Some(n) => n.to_string(),
                        None => a.name.split('.').next().unwrap_or("").to_string(),
                    };
                    self.cur().bind(&n);
                }
            }
            S::ImportFrom(i) => {
                for a in &i.names {
                    let n = a.asname.as_ref().unwrap_or(&a.name).to_string();
                    self.cur().bind(&n);
                }
            }
            S::Global(g) => {
                for n in &g.names {
                    self.cur().globals.insert(n.to_string());
                }
            }
            S::Nonlocal(g) => {
                for n in &g.names {
                    self.cur().nonlocals.insert(n.to_string());
                }
            }
            S::Expr(e) => self.expr(&e.value),
            _ => {}
        }
    }

    fn target(&mut self, t: &ast::Expr) {
        match t {
            ast::Expr::Name(n) => self.cur().bind(&n.id),
            ast::Expr::Tuple(t) => t.elts.iter().for_each(|e| self.target(e)),
            ast::Expr::List(t) => t.elts.iter().for_each(|e| self.target(e)),
            ast::Expr::Starred(s) => self.target(&s.value),
            other => self.expr(other),
        }
    }

    fn comp(&mut self, gens: &[ast::Comprehension], elts: &[&ast::Expr]) {
        self.expr(&gens[0].iter);
        self.push(Sym::new(ScopeKind::Comprehension));
        self.cur().params.push(".0".into());
        self.cur().bind(".0");
        for (i, g) in gens.iter().enumerate() {
            if i > 0 {
                self.expr(&g.iter);
            }
            self.target(&g.target);
            for c in &g.ifs {
                self.expr(c);
            }
        }
        for e in elts {
            self.expr(e);
        }
        self.pop();
    }

    fn expr(&mut self, e: &ast::Expr) {
        use ast::Expr as E;
        match e {
            E::Name(n) => {
                if n.id.as_str() == "super" {
                    self.cur().use_("__class__");
                }
                match n.ctx {
                    ast::ExprContext::Load => self.cur().use_(&n.id),
                    _ => self.cur().bind(&n.id),
                }
            }
            E::BoolOp(b) => b.values.iter().for_each(|v| self.expr(v)),
            E::NamedExpr(n) => {
                self.expr(&n.value);
                // The walrus binds in the nearest function scope.
                let name = match &*n.target {
                    E::Name(x) => x.id.to_string(),
                    _ => return,
                };
                let idx = self
                    .stack
                    .iter()
                    .rposition(|s| s.kind() != ScopeKind::Comprehension)
                    .unwrap_or(0);
                self.stack[idx].bind(&name);
                if idx + 1 != self.stack.len() {
                    self.cur().use_(&name);
                }
            }
            E::BinOp(b) => {
                self.expr(&b.left);
                self.expr(&b.right);
            }
            E::UnaryOp(u) => self.expr(&u.operand),
            E::Lambda(l) => {
                self.args(&l.args);
                self.push(Sym::new(ScopeKind::Function));
                self.params(&l.args);
                self.expr(&l.body);
                self.pop();
            }
            E::IfExp(i) => {
                self.expr(&i.test);
                self.expr(&i.body);
                self.expr(&i.orelse);
            }
            E::Dict(d) => {
                for (k, v) in d.keys.iter().zip(d.values.iter()) {
                    if let Some(k) = k {
                        self.expr(k);
                    }
                    self.expr(v);
                }
            }
            E::Set(s) => s.elts.iter().for_each(|v| self.expr(v)),
            E::ListComp(c) => self.comp(&c.generators, &[&c.elt]),
            E::SetComp(c) => self.comp(&c.generators, &[&c.elt]),
            E::GeneratorExp(c) => self.comp(&c.generators, &[&c.elt]),
            E::DictComp(c) => self.comp(&c.generators, &[&c.key, &c.value]),
            E::Compare(c) => {
                self.expr(&c.left);
                c.comparators.iter().for_each(|v| self.expr(v));
            }
            E::Call(c) => {
                self.expr(&c.func);
                c.args.iter().for_each(|v| self.expr(v));
                c.keywords.iter().for_each(|k| self.expr(&k.value));
            }
            E::FormattedValue(f) => {
                self.expr(&f.value);
                if let Some(s) = &f.format_spec {
                    self.expr(s);
                }
            }
            E::JoinedStr(j) => j.values.iter().for_each(|v| self.expr(v)),
            E::Attribute(a) => self.expr(&a.value),
            E::Subscript(s) => {
                self.expr(&s.value);
                self.expr(&s.slice);
            }
            E::Starred(s) => self.expr(&s.value),
            E::List(l) => l.elts.iter().for_each(|v| self.expr(v)),
            E::Tuple(l) => l.elts.iter().for_each(|v| self.expr(v)),
            E::Slice(s) => {
                for x in [&s.lower, &s.upper, &s.step].into_iter().flatten() {
                    self.expr(x);
                }
            }
            _ => {}
        }
    }
}

fn analyze(s: &mut Sym, enclosing: &HashSet<String>) {
    let kind = s.kind();
    if matches!(kind, ScopeKind::Function | ScopeKind::Comprehension) {
        for n in &s.bound {
            if !s.globals.contains(n) && !s.nonlocals.contains(n) {
                s.locals.insert(n.clone());
            }
        }
    }
    let inner: HashSet<String> = match kind {
        ScopeKind::Function | ScopeKind::Comprehension => {
            enclosing.union(&s.locals).cloned().collect()
        }
        ScopeKind::Class => {
            let mut e = enclosing.clone();
            e.insert("__class__".into());
            e
        }
        ScopeKind::Module => HashSet::new(),
    };
    let mut child_frees: Vec<String> = Vec::new();
    for c in &mut s.children {
        analyze(c, &inner);
        for f in &c.frees {
            if !child_frees.contains(f) {
                child_frees.push(f.clone());
            }
        }
    }
    let mut frees: Vec<String> = Vec::new();
    for name in child_frees {
        let is_local = s.locals.contains(&name);
        if is_local || (kind == ScopeKind::Class && name == "__class__") {
            if !s.cells.contains(&name) {
                s.cells.push(name);
            }
        } else if !frees.contains(&name) && kind != ScopeKind::Module {
            frees.push(name);
        }
    }
    let mut own: Vec<&String> = s.used.iter().chain(s.nonlocals.iter()).collect();
    own.sort();
    for name in own {
        if s.locals.contains(name) || s.globals.contains(name) {
            continue;
        }
        if kind == ScopeKind::Class && s.bound.contains(name) {
            continue;
        }
        if enclosing.contains(name) && !frees.contains(name) {
            frees.push(name.clone());
        }
    }
    s.frees = frees;
}

// ---------------------------------------------------------------- code generation

#[derive(Clone, Copy)]
enum Res {
    Local(u32),
    Cell(u32),
    Global,
    Class(Option<u32>),
}

struct Scope {
    kind: ScopeKind,
    slots: HashMap<String, u32>,
    local_names: Vec<Rc<str>>,
    cells: HashMap<String, u32>,
    cell_names: Vec<Rc<str>>,
    ncells: usize,
    sym_globals: HashSet<String>,
    class_bound: HashSet<String>,
    children: std::vec::IntoIter<Sym>,
    qualname: String,
}

/// The compiler: one per source file.
pub struct Compiler {
    lines: Vec<usize>,
    interner: HashMap<String, Rc<str>>,
    scopes: Vec<Scope>,
}

fn unsupported<T>(what: &str, line: u32) -> CResult<T> {
    Err(CompileError {
        msg: format!("NotImplementedError: {what} at line {line}"),
        line,
    })
}

impl Compiler {
    fn line<R: Ranged>(&self, r: &R) -> u32 {
        let off = r.range().start().to_usize();
        match self.lines.binary_search(&off) {
            Ok(i) => i as u32 + 1,
            Err(i) => i as u32,
        }
    }

    fn name(&mut self, s: &str) -> Name {
        Name::new(s, &mut self.interner)
    }

    fn rc(&mut self, s: &str) -> Rc<str> {
        self.interner
            .entry(s.to_string())
            .or_insert_with(|| Rc::from(s))
            .clone()
    }

    fn scope(&mut self) -> &mut Scope {
        self.scopes.last_mut().expect("scope")
    }

    fn enter(&mut self, sym: Sym, name: &str) -> Scope {
        let kind = sym.kind();
        let mut slots = HashMap::new();
        let mut local_names = Vec::new();
        if matches!(kind, ScopeKind::Function | ScopeKind::Comprehension) {
            for p in sym.params.iter().chain(sym.order.iter()) {
                if sym.locals.contains(p) && !slots.contains_key(p) {
                    slots.insert(p.clone(), local_names.len() as u32);
                    local_names.push(self.rc(p));
                }
            }
        }
        let mut cells = HashMap::new();
        let mut cell_names = Vec::new();
        for c in sym.cells.iter().chain(sym.frees.iter()) {
            cells.insert(c.clone(), cell_names.len() as u32);
            cell_names.push(self.rc(c));
        }
        let parent_q = self.scopes.last().map(|s| match s.kind {
            ScopeKind::Module => String::new(),
            ScopeKind::Class => format!("{}.", s.qualname),
            _ => format!("{}.<locals>.", s.qualname),
        });
        Scope {
            kind,
            slots,
            local_names,
            cells,
            cell_names,
            ncells: sym.cells.len(),
            sym_globals: sym.globals.clone(),
            class_bound: sym.bound.clone(),
            children: sym.children.into_iter(),
            qualname: format!("{}{}", parent_q.unwrap_or_default(), name),
        }
    }

    fn resolve(&self, n: &str) -> Res {
        let s = self.scopes.last().expect("scope");
        if s.sym_globals.contains(n) {
            return Res::Global;
        }
        match s.kind {
            ScopeKind::Module => Res::Global,
            ScopeKind::Class => {
                let cell = s.cells.get(n).copied();
                if s.class_bound.contains(n) {
                    Res::Class(None)
                } else {
                    Res::Class(cell)
                }
            }
            _ => {
                if let Some(&c) = s.cells.get(n) {
                    Res::Cell(c)
                } else if let Some(&l) = s.slots.get(n) {
                    Res::Local(l)
                } else {
                    Res::Global
                }
            }
        }
    }

    fn load(&mut self, n: &str) -> Expr {
        match self.resolve(n) {
            Res::Local(i) => Expr::Local(i),
            Res::Cell(i) => Expr::Cell(i),
            Res::Global => Expr::Global(self.name(n)),
            Res::Class(c) => Expr::ClassLoad(self.name(n), c),
        }
    }

    fn store(&mut self, n: &str) -> Target {
        match self.resolve(n) {
            Res::Local(i) => Target::Local(i),
            Res::Cell(i) => Target::Cell(i),
            Res::Global => Target::Global(self.name(n)),
            Res::Class(_) => Target::ClassStore(self.name(n)),
        }
    }

    /// Closure for a child scope: where each of its free variables is in this frame.
    fn closure_for(&self, frees: &[Rc<str>]) -> Vec<u32> {
        let s = self.scopes.last().expect("scope");
        frees
            .iter()
            .map(|f| {
                *s.cells
                    .get(&**f)
                    .expect("free variable resolved by the symtable")
            })
            .collect()
    }

    fn finish(&mut self, sc: Scope, body: Vec<Stmt>, line: u32, name: &str) -> Code {
        let class_cell = if sc.kind == ScopeKind::Class {
            sc.cells.get("__class__").copied()
        } else {
            None
        };
        let mut cell_params = Vec::new();
        for (n, &slot) in &sc.slots {
            if let Some(&c) = sc.cells.get(n) {
                cell_params.push((slot, c));
            }
        }
        cell_params.sort();
        Code {
            name: self.rc(name),
            qualname: Rc::from(sc.qualname.as_str()),
            kind: sc.kind,
            argcount: 0,
            kwonly: 0,
            vararg: None,
            kwarg: None,
            local_names: sc.local_names,
            cell_names: sc.cell_names,
            ncells: sc.ncells,
            cell_params,
            class_cell,
            body,
            line,
        }
    }

    fn next_child(&mut self) -> Sym {
        self.scope()
            .children
            .next()
            .expect("symtable and compiler agree")
    }

    fn funcdef(
        &mut self,
        name: &str,
        args: &ast::Arguments,
        body: FuncBody,
        line: u32,
    ) -> CResult<FuncDef> {
        let mut defaults = Vec::new();
        for d in args.posonlyargs.iter().chain(args.args.iter()) {
            if let Some(e) = &d.default {
                defaults.push(self.expr(e)?);
            }
        }
        let mut kw_defaults = Vec::new();
        for d in &args.kwonlyargs {
            kw_defaults.push(match &d.default {
                Some(e) => Some(self.expr(e)?),
                None => None,
            });
        }
        let sym = self.next_child();
        let sc = self.enter(sym, name);
        self.scopes.push(sc);
        let stmts = match body {
            FuncBody::Stmts(b) => self.stmts(b)?,
            FuncBody::Lambda(e) => {
                let line = self.line(e);
                vec![Stmt {
                    line,
                    kind: StmtKind::Return(Some(self.expr(e)?)),
                }]
            }
        };
        let sc = self.scopes.pop().expect("scope");
        let mut code = self.finish(sc, stmts, line, name);
        code.argcount = args.posonlyargs.len() + args.args.len();
        code.kwonly = args.kwonlyargs.len();
        let mut next = (code.argcount + code.kwonly) as u32;
        if args.vararg.is_some() {
            code.vararg = Some(next);
            next += 1;
        }
        if args.kwarg.is_some() {
            code.kwarg = Some(next);
        }
        let frees: Vec<Rc<str>> = code.cell_names[code.ncells..].to_vec();
        let closure = self.closure_for(&frees);
        Ok(FuncDef {
            code: Rc::new(code),
            defaults,
            kw_defaults,
            closure,
        })
    }

    fn stmts(&mut self, b: &[ast::Stmt]) -> CResult<Vec<Stmt>> {
        let mut out = Vec::with_capacity(b.len());
        for s in b {
            if let Some(s) = self.stmt(s)? {
                out.push(s);
            }
        }
        Ok(out)
    }

    fn target(&mut self, t: &ast::Expr) -> CResult<Target> {
        use ast::Expr as E;
        Ok(match t {
            E::Name(n) => self.store(&n.id),
            E::Attribute(a) => {
                let o = self.expr(&a.value)?;
                Target::Attr(o, self.name(&a.attr))
            }
            E::Subscript(s) => {
                let o = self.expr(&s.value)?;
                let i = self.expr(&s.slice)?;
                Target::Subscript(o, i)
            }
            E::Tuple(t) => self.seq_target(&t.elts)?,
            E::List(t) => self.seq_target(&t.elts)?,
            other => return unsupported("this assignment target", self.line(other)),
        })
    }

    fn seq_target(&mut self, elts: &[ast::Expr]) -> CResult<Target> {
        let mut v = Vec::new();
        let mut star = None;
        for (i, e) in elts.iter().enumerate() {
            if let ast::Expr::Starred(s) = e {
                star = Some(i);
                v.push(self.target(&s.value)?);
            } else {
                v.push(self.target(e)?);
            }
        }
        Ok(Target::Seq(v, star))
    }

    fn stmt(&mut self, s: &ast::Stmt) -> CResult<Option<Stmt>> {
        use ast::Stmt as S;
        let line = self.line(s);
        let kind = match s {
            S::FunctionDef(f) => {
                let mut decorators = Vec::new();
                for d in &f.decorator_list {
                    decorators.push(self.expr(d)?);
                }
                let def = self.funcdef(&f.name, &f.args, FuncBody::Stmts(&f.body), line)?;
                StmtKind::FuncDef(Rc::new(def), decorators, self.store(&f.name))
            }
            S::ClassDef(c) => {
                if !c.keywords.is_empty() {
                    return unsupported("class keywords (metaclass=…)", line);
                }
                let mut decorators = Vec::new();
                for d in &c.decorator_list {
                    decorators.push(self.expr(d)?);
                }
                let mut bases = Vec::new();
                for b in &c.bases {
                    bases.push(self.expr(b)?);
                }
                let sym = self.next_child();
                let sc = self.enter(sym, &c.name);
                self.scopes.push(sc);
                let body = self.stmts(&c.body)?;
                let sc = self.scopes.pop().expect("scope");
                let code = self.finish(sc, body, line, &c.name);
                let frees: Vec<Rc<str>> = code.cell_names[code.ncells..].to_vec();
                let closure = self.closure_for(&frees);
                StmtKind::ClassDef {
                    name: self.rc(&c.name),
                    bases,
                    code: Rc::new(code),
                    closure,
                    decorators,
                    target: self.store(&c.name),
                }
            }
            S::Return(r) => StmtKind::Return(match &r.value {
                Some(v) => Some(self.expr(v)?),
                None => None,
            }),
            S::Delete(d) => {
                let mut ts = Vec::new();
                for t in &d.targets {
                    ts.push(self.target(t)?);
                }
                StmtKind::Del(ts)
            }
            S::Assign(a) => {
                let v = self.expr(&a.value)?;
                let mut ts = Vec::new();
                for t in &a.targets {
                    ts.push(self.target(t)?);
                }
                StmtKind::Assign(ts, v)
            }
            S::AnnAssign(a) => match &a.value {
                Some(v) => {
                    let v = self.expr(v)?;
                    StmtKind::Assign(vec![self.target(&a.target)?], v)
                }
                None => StmtKind::Pass,
            },
            S::AugAssign(a) => {
                let v = self.expr(&a.value)?;
                let t = self.target(&a.target)?;
                StmtKind::AugAssign(t, binop(&a.op), v)
            }
            S::For(f) => {
                let it = self.expr(&f.iter)?;
                let t = self.target(&f.target)?;
                StmtKind::For(t, it, self.stmts(&f.body)?, self.stmts(&f.orelse)?)
            }
            S::While(w) => StmtKind::While(
                self.expr(&w.test)?,
                self.stmts(&w.body)?,
                self.stmts(&w.orelse)?,
            ),
            S::If(i) => StmtKind::If(
                self.expr(&i.test)?,
                self.stmts(&i.body)?,
                self.stmts(&i.orelse)?,
            ),
            S::With(w) => {
                if w.items.len() != 1 {
                    return unsupported("`with` with several items", line);
                }
                let item = &w.items[0];
                let e = self.expr(&item.context_expr)?;
                let t = match &item.optional_vars {
                    Some(v) => Some(self.target(v)?),
                    None => None,
                };
                StmtKind::With(e, t, self.stmts(&w.body)?)
            }
            S::Raise(r) => StmtKind::Raise(
                match &r.exc {
                    Some(e) => Some(self.expr(e)?),
                    None => None,
                },
                match &r.cause {
                    Some(e) => Some(self.expr(e)?),
                    None => None,
                },
            ),
            S::Try(t) => {
                let body = self.stmts(&t.body)?;
                let mut hs = Vec::new();
                for h in &t.handlers {
                    let ast::ExceptHandler::ExceptHandler(h) = h;
                    let typ = match &h.type_ {
                        Some(e) => Some(self.expr(e)?),
                        None => None,
                    };
                    let name = h.name.as_ref().map(|n| self.store(n));
                    hs.push(Handler {
                        typ,
                        name,
                        body: self.stmts(&h.body)?,
                    });
                }
                StmtKind::Try(body, hs, self.stmts(&t.orelse)?, self.stmts(&t.finalbody)?)
            }
            S::Assert(a) => StmtKind::Assert(
                self.expr(&a.test)?,
                match &a.msg {
                    Some(m) => Some(self.expr(m)?),
                    None => None,
                },
            ),
            S::Import(i) => {
                if i.names.len() != 1 {
                    let mut out = Vec::new();
                    for a in &i.names {
                        let (m, t) = self.import_one(a);
                        out.push(Stmt {
                            line,
                            kind: StmtKind::Import(m, t),
                        });
                    }
                    // Several imports: an `if True:` block holding them.
                    return Ok(Some(Stmt {
                        line,
                        kind: StmtKind::If(Expr::Const(Value::Bool(true)), out, vec![]),
                    }));
                }
                let (m, t) = self.import_one(&i.names[0]);
                StmtKind::Import(m, t)
            }
            S::ImportFrom(i) => {
                let m = match &i.module {
                    Some(m) => self.rc(m),
                    None => return unsupported("relative import", line),
                };
                let mut names = Vec::new();
                for a in &i.names {
                    if a.name.as_str() == "*" {
                        return unsupported("`import *`", line);
                    }
                    let n = self.name(&a.name);
                    let t = self.store(a.asname.as_ref().unwrap_or(&a.name));
                    names.push((n, t));
                }
                StmtKind::ImportFrom(m, names)
            }
            S::Global(_) | S::Nonlocal(_) => return Ok(None),
            S::Expr(e) => StmtKind::Expr(self.expr(&e.value)?),
            S::Pass(_) => StmtKind::Pass,
            S::Break(_) => StmtKind::Break,
            S::Continue(_) => StmtKind::Continue,
            S::AsyncFunctionDef(_) | S::AsyncFor(_) | S::AsyncWith(_) => {
                return unsupported("async", line)
            }
            S::Match(_) => return unsupported("match statement", line),
            S::TryStar(_) => return unsupported("except*", line),
            S::TypeAlias(_) => return unsupported("type alias", line),
        };
        Ok(Some(Stmt { line, kind }))
    }

    fn import_one(&mut self, a: &ast::Alias) -> (Rc<str>, Target) {
        let m = self.rc(&a.name);
        let bind = match &a.asname {
            Some(n) => n.to_string(),
            None => a.name.split('.').next().unwrap_or("").to_string(),
        };
        (m, self.store(&bind))
    }

    fn elts(&mut self, es: &[ast::Expr]) -> CResult<Vec<Elt>> {
        let mut v = Vec::with_capacity(es.len());
        for e in es {
            v.push(match e {
                ast::Expr::Starred(s) => Elt::Star(self.expr(&s.value)?),
                e => Elt::One(self.expr(e)?),
            });
        }
        Ok(v)
    }

    fn args(&mut self, c: &ast::ExprCall) -> CResult<Args> {
        let pos = self.elts(&c.args)?;
        let mut kw = Vec::new();
        let mut kwstar = None;
        for k in &c.keywords {
            match &k.arg {
                Some(n) => {
                    let n = self.name(n);
                    kw.push((n, self.expr(&k.value)?));
                }
                None => kwstar = Some(self.expr(&k.value)?),
            }
        }
        let simple =
            kw.is_empty() && kwstar.is_none() && pos.iter().all(|e| matches!(e, Elt::One(_)));
        Ok(Args {
            pos,
            kw,
            kwstar,
            simple,
        })
    }

    fn comp(
        &mut self,
        kind: CompKind,
        gens: &[ast::Comprehension],
        elt: &ast::Expr,
        val: Option<&ast::Expr>,
        line: u32,
    ) -> CResult<Expr> {
        if gens.iter().any(|g| g.is_async) {
            return unsupported("async comprehension", line);
        }
        let iter = self.expr(&gens[0].iter)?;
        let sym = self.next_child();
        let name = match kind {
            CompKind::List => "<listcomp>",
            CompKind::Set => "<setcomp>",
            CompKind::Dict => "<dictcomp>",
            CompKind::Gen => "<genexpr>",
        };
        let sc = self.enter(sym, name);
        self.scopes.push(sc);
        let mut cgens = Vec::new();
        for (i, g) in gens.iter().enumerate() {
            let it = if i == 0 {
                Expr::Local(0)
            } else {
                self.expr(&g.iter)?
            };
            let target = self.target(&g.target)?;
            let mut ifs = Vec::new();
            for c in &g.ifs {
                ifs.push(self.expr(c)?);
            }
            cgens.push(CompGen {
                target,
                iter: it,
                ifs,
            });
        }
        let elt = self.expr(elt)?;
        let val = match val {
            Some(v) => Some(self.expr(v)?),
            None => None,
        };
        let sc = self.scopes.pop().expect("scope");
        let body = vec![Stmt {
            line,
            kind: StmtKind::Comp {
                kind,
                gens: cgens,
                elt,
                val,
            },
        }];
        let mut code = self.finish(sc, body, line, name);
        code.argcount = 1;
        let frees: Vec<Rc<str>> = code.cell_names[code.ncells..].to_vec();
        let closure = self.closure_for(&frees);
        Ok(Expr::Comp(Box::new(CompExpr {
            code: Rc::new(code),
            closure,
            iter,
        })))
    }

    fn fstring_parts(&mut self, values: &[ast::Expr], out: &mut Vec<FPart>) -> CResult<()> {
        for v in values {
            match v {
                ast::Expr::Constant(c) => {
                    if let ast::Constant::Str(s) = &c.value {
                        out.push(FPart::Lit(Rc::from(s.as_str())));
                    }
                }
                ast::Expr::FormattedValue(f) => {
                    let e = self.expr(&f.value)?;
                    let conv = match f.conversion {
                        ast::ConversionFlag::None => 0,
                        ast::ConversionFlag::Str => b's',
                        ast::ConversionFlag::Repr => b'r',
                        ast::ConversionFlag::Ascii => b'a',
                    };
                    let spec = match &f.format_spec {
                        Some(s) => {
                            let mut sp = Vec::new();
                            match &**s {
                                ast::Expr::JoinedStr(j) => {
                                    self.fstring_parts(&j.values, &mut sp)?
                                }
                                other => {
                                    self.fstring_parts(std::slice::from_ref(other), &mut sp)?
                                }
                            }
                            Some(sp)
                        }
                        None => None,
                    };
                    out.push(FPart::Val(e, conv, spec));
                }
                ast::Expr::JoinedStr(j) => self.fstring_parts(&j.values, out)?,
                other => return unsupported("f-string part", self.line(other)),
            }
        }
        Ok(())
    }

    fn expr(&mut self, e: &ast::Expr) -> CResult<Expr> {
        use ast::Expr as E;
        let line = self.line(e);
        Ok(match e {
            E::Constant(c) => Expr::Const(match &c.value {
                ast::Constant::None => Value::None,
                ast::Constant::Bool(b) => Value::Bool(*b),
                ast::Constant::Str(s) => Value::Str(self.rc(s)),
                ast::Constant::Int(i) => match i64::try_from(i) {
                    Ok(v) => Value::Int(v),
                    Err(_) => return unsupported("integer literal beyond 64 bits", line),
                },
                ast::Constant::Float(f) => Value::Float(*f),
                ast::Constant::Ellipsis => Value::None,
                ast::Constant::Tuple(_) => return unsupported("constant tuple", line),
                ast::Constant::Bytes(_) => return unsupported("bytes literal", line),
                ast::Constant::Complex { .. } => return unsupported("complex literal", line),
            }),
            E::Name(n) => self.load(&n.id),
            E::BoolOp(b) => {
                let mut it = b.values.iter().rev();
                let mut acc = self.expr(it.next().expect("operands"))?;
                for v in it {
                    let l = self.expr(v)?;
                    acc = match b.op {
                        ast::BoolOp::And => Expr::And(Box::new(l), Box::new(acc)),
                        ast::BoolOp::Or => Expr::Or(Box::new(l), Box::new(acc)),
                    };
                }
                acc
            }
            E::NamedExpr(n) => {
                let v = self.expr(&n.value)?;
                let name = match &*n.target {
                    E::Name(x) => x.id.to_string(),
                    _ => return unsupported("walrus target", line),
                };
                // Resolved in the nearest non-comprehension scope.
                let t = if self.scope().kind == ScopeKind::Comprehension {
                    match self.resolve(&name) {
                        Res::Cell(i) => Target::Cell(i),
                        _ => Target::Global(self.name(&name)),
                    }
                } else {
                    self.store(&name)
                };
                Expr::Walrus(Box::new(t), Box::new(v))
            }
            E::BinOp(b) => Expr::Bin(
                binop(&b.op),
                Box::new(self.expr(&b.left)?),
                Box::new(self.expr(&b.right)?),
            ),
            E::UnaryOp(u) => {
                let o = Box::new(self.expr(&u.operand)?);
                match u.op {
                    ast::UnaryOp::Not => Expr::Not(o),
                    ast::UnaryOp::USub => Expr::Unary(UnOp::Neg, o),
                    ast::UnaryOp::UAdd => Expr::Unary(UnOp::Pos, o),
                    ast::UnaryOp::Invert => Expr::Unary(UnOp::Invert, o),
                }
            }
            E::Lambda(l) => {
                let def = self.funcdef("<lambda>", &l.args, FuncBody::Lambda(&l.body), line)?;
                Expr::Lambda(Rc::new(def))
            }
            E::IfExp(i) => Expr::IfExp(
                Box::new(self.expr(&i.test)?),
                Box::new(self.expr(&i.body)?),
                Box::new(self.expr(&i.orelse)?),
            ),
            E::Dict(d) => {
                let mut items = Vec::new();
                for (k, v) in d.keys.iter().zip(d.values.iter()) {
                    let k = match k {
                        Some(k) => Some(self.expr(k)?),
                        None => None,
                    };
                    items.push((k, self.expr(v)?));
                }
                Expr::Dict(items)
            }
            E::Set(s) => Expr::Set(self.elts(&s.elts)?),
            E::List(l) => Expr::List(self.elts(&l.elts)?),
            E::Tuple(t) => Expr::Tuple(self.elts(&t.elts)?),
            E::ListComp(c) => self.comp(CompKind::List, &c.generators, &c.elt, None, line)?,
            E::SetComp(c) => self.comp(CompKind::Set, &c.generators, &c.elt, None, line)?,
            E::GeneratorExp(c) => self.comp(CompKind::Gen, &c.generators, &c.elt, None, line)?,
            E::DictComp(c) => {
                self.comp(CompKind::Dict, &c.generators, &c.key, Some(&c.value), line)?
            }
            E::Compare(c) => {
                let left = self.expr(&c.left)?;
                let mut rest = Vec::new();
                for (op, r) in c.ops.iter().zip(c.comparators.iter()) {
                    let op = match op {
                        ast::CmpOp::Eq => CmpOp::Eq,
                        ast::CmpOp::NotEq => CmpOp::Ne,
                        ast::CmpOp::Lt => CmpOp::Lt,
                        ast::CmpOp::LtE => CmpOp::Le,
                        ast::CmpOp::Gt => CmpOp::Gt,
                        ast::CmpOp::GtE => CmpOp::Ge,
                        ast::CmpOp::Is => CmpOp::Is,
                        ast::CmpOp::IsNot => CmpOp::IsNot,
                        ast::CmpOp::In => CmpOp::In,
                        ast::CmpOp::NotIn => CmpOp::NotIn,
                    };
                    rest.push((op, self.expr(r)?));
                }
                Expr::Compare(Box::new(left), rest)
            }
            E::Call(c) => {
                // Zero-argument super() in a method.
                if let E::Name(n) = &*c.func {
                    if n.id.as_str() == "super" && c.args.is_empty() && c.keywords.is_empty() {
                        if let Some(sup) = self.super0() {
                            return Ok(sup);
                        }
                    }
                }
                if let E::Attribute(a) = &*c.func {
                    let o = self.expr(&a.value)?;
                    let n = self.name(&a.attr);
                    let args = self.args(c)?;
                    return Ok(Expr::CallMethod(Box::new(o), n, Box::new(args), line));
                }
                let f = self.expr(&c.func)?;
                let args = self.args(c)?;
                Expr::Call(Box::new(f), Box::new(args), line)
            }
            E::JoinedStr(j) => {
                let mut parts = Vec::new();
                self.fstring_parts(&j.values, &mut parts)?;
                Expr::FStr(parts)
            }
            E::FormattedValue(_) => {
                let mut parts = Vec::new();
                self.fstring_parts(std::slice::from_ref(e), &mut parts)?;
                Expr::FStr(parts)
            }
            E::Attribute(a) => {
                let o = self.expr(&a.value)?;
                Expr::Attr(Box::new(o), self.name(&a.attr))
            }
            E::Subscript(s) => Expr::Subscript(
                Box::new(self.expr(&s.value)?),
                Box::new(self.expr(&s.slice)?),
            ),
            E::Slice(s) => {
                let mut f = |x: &Option<Box<ast::Expr>>| -> CResult<Option<Box<Expr>>> {
                    Ok(match x {
                        Some(x) => Some(Box::new(self.expr(x)?)),
                        None => None,
                    })
                };
                let (a, b, c) = (f(&s.lower)?, f(&s.upper)?, f(&s.step)?);
                Expr::Slice(a, b, c)
            }
            E::Starred(_) => return unsupported("starred expression here", line),
            E::Await(_) => return unsupported("await", line),
            E::Yield(_) | E::YieldFrom(_) => return unsupported("generators (yield)", line),
        })
    }

    fn super0(&mut self) -> Option<Expr> {
        let s = self.scopes.last()?;
        if s.kind != ScopeKind::Function {
            return None;
        }
        let class_cell = *s.cells.get("__class__")?;
        let first = s.local_names.first()?.clone();
        let first = self.load(&first);
        Some(Expr::Super(class_cell, Box::new(first)))
    }
}

enum FuncBody<'a> {
    Stmts(&'a [ast::Stmt]),
    Lambda(&'a ast::Expr),
}

fn binop(op: &ast::Operator) -> BinOp {
    match op {
        ast::Operator::Add => BinOp::Add,
        ast::Operator::Sub => BinOp::Sub,
        ast::Operator::Mult => BinOp::Mul,
        ast::Operator::MatMult => BinOp::MatMul,
        ast::Operator::Div => BinOp::Div,
        ast::Operator::Mod => BinOp::Mod,
        ast::Operator::Pow => BinOp::Pow,
        ast::Operator::LShift => BinOp::LShift,
        ast::Operator::RShift => BinOp::RShift,
        ast::Operator::BitOr => BinOp::BitOr,
        ast::Operator::BitXor => BinOp::BitXor,
        ast::Operator::BitAnd => BinOp::BitAnd,
        ast::Operator::FloorDiv => BinOp::FloorDiv,
    }
}

/// Parses and compiles a module.
pub fn compile_module(source: &str, path: &str) -> CResult<Code> {
    let module =
        rustpython_parser::parse(source, rustpython_parser::Mode::Module, path).map_err(|e| {
            let off = e.offset.to_usize();
            let line = source[..off.min(source.len())].matches('\n').count() as u32 + 1;
            CompileError {
                msg: format!("SyntaxError: {} at line {line}", e.error),
                line,
            }
        })?;
    let body = match module {
        ast::Mod::Module(m) => m.body,
        _ => {
            return Err(CompileError {
                msg: "SyntaxError: not a module".into(),
                line: 0,
            })
        }
    };
    let mut sb = SymBuilder {
        stack: vec![Sym::new(ScopeKind::Module)],
    };
    sb.stmts(&body);
    let mut top = sb.stack.pop().expect("module scope");
    analyze(&mut top, &HashSet::new());
    let mut lines = vec![0];
    for (i, b) in source.bytes().enumerate() {
        if b == b'\n' {
            lines.push(i + 1);
        }
    }
    let mut c = Compiler {
        lines,
        interner: HashMap::new(),
        scopes: Vec::new(),
    };
    let sc = c.enter(top, "<module>");
    c.scopes.push(sc);
    let stmts = c.stmts(&body)?;
    let sc = c.scopes.pop().expect("scope");
    Ok(c.finish(sc, stmts, 1, "<module>"))
}

//! Tests of the interpreter through its library API and binary.

use std::process::Command;

fn run(code: &str) -> (String, String, i32) {
    let o = Command::new(env!("CARGO_BIN_EXE_minipy"))
        .arg("-c")
        .arg(code)
        .output()
        .expect("run minipy");
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        o.status.code().unwrap_or(-1),
    )
}

#[test]
fn seed_program() {
    let src = "import gc\nclass MyObject:\n    def __init__(self, name):\n        self.name = name\n    def __del__(self):\n        print(f\"{self.name} has been garbage collected\")\nobj1 = MyObject(\"My Object\")\nobj2 = MyObject(\"Object\")\nobj1.ref = obj2\nobj2.ref = obj1\ndel obj1\ndel obj2\ngc.collect()\n";
    let (out, _, code) = run(src);
    assert_eq!(
        out,
        "My Object has been garbage collected\nObject has been garbage collected\n"
    );
    assert_eq!(code, 0);
}

#[test]
fn uncaught_exception_prints_traceback_and_exits_1() {
    let (out, err, code) = run("print('a')\nx = undefined_name\n");
    assert_eq!(out, "a\n");
    assert!(err.contains("Traceback (most recent call last):"), "{err}");
    assert!(
        err.ends_with("NameError: name 'undefined_name' is not defined\n"),
        "{err}"
    );
    assert_eq!(code, 1);
}

#[test]
fn unsupported_syntax_is_a_clear_error_not_a_panic() {
    let (_, err, code) = run("def g():\n    yield 1\n");
    assert!(
        err.contains("NotImplementedError: generators (yield) at line 2"),
        "{err}"
    );
    assert_eq!(code, 1);
}

#[test]
fn int_overflow_is_an_overflow_error() {
    let (_, err, code) = run("x = 2 ** 62\nx = x * 4\n");
    assert!(err.contains("OverflowError"), "{err}");
    assert_eq!(code, 1);
}

#[test]
fn del_runs_at_the_cpython_points() {
    let src = "class C:\n    def __init__(s, n): s.n = n\n    def __del__(s): print('del', s.n)\ndef f():\n    a = C('local')\n    return 1\nf()\nprint('after f')\nx = C('x')\nx = None\nprint('end')\n";
    let (out, _, _) = run(src);
    assert_eq!(out, "del local\nafter f\ndel x\nend\n");
}

#[test]
fn exception_in_del_is_reported_not_raised() {
    let src = "class B:\n    def __del__(self): raise ValueError('boom')\nb = B()\ndel b\nprint('goes on')\n";
    let (out, err, code) = run(src);
    assert_eq!(out, "goes on\n");
    assert!(
        err.contains("Exception ignored in: <function B.__del__"),
        "{err}"
    );
    assert!(err.contains("ValueError: boom"), "{err}");
    assert_eq!(code, 0);
}

#[test]
fn compile_resolves_locals_to_slots() {
    let code =
        reap_minipy::compile::compile_module("def f(a, b):\n    c = a + b\n    return c\n", "t.py")
            .expect("compiles");
    let reap_minipy::compile::StmtKind::FuncDef(def, _, _) = &code.body[0].kind else {
        panic!("expected a def");
    };
    let names: Vec<&str> = def.code.local_names.iter().map(|s| &**s).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(def.code.argcount, 2);
}

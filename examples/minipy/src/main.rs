//! `minipy FILE.py` / `minipy -c CODE`

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (path, source) = match args.get(1).map(String::as_str) {
        Some("-c") => match args.get(2) {
            Some(code) => ("<string>".to_string(), code.clone()),
            None => {
                eprintln!("Argument expected for the -c option");
                std::process::exit(2);
            }
        },
        Some(path) => match std::fs::read_to_string(path) {
            Ok(s) => (path.to_string(), s),
            Err(e) => {
                eprintln!("minipy: can't open file '{path}': {e}");
                std::process::exit(2);
            }
        },
        None => {
            eprintln!("usage: minipy FILE.py | minipy -c CODE");
            std::process::exit(2);
        }
    };
    // Deep Python recursion needs a deep Rust stack.
    let child = std::thread::Builder::new()
        .stack_size(512 << 20)
        .spawn(move || {
            let r = std::panic::catch_unwind(|| reap_minipy::run_source(&path, &source));
            match r {
                Ok(status) => status,
                Err(_) => {
                    eprintln!("SystemError: minipy internal error (a Rust panic, reported above)");
                    70
                }
            }
        })
        .expect("spawn the interpreter thread");
    let status = child.join().unwrap_or(70);
    // The heap and the interpreter are not torn down: the process exits.
    std::process::exit(status);
}

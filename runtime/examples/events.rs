//! An event dispatcher that holds its handlers weakly (`WeakFnMethod`): a subscriber that goes
//! away is neither kept alive by the dispatcher nor called, and never has to unsubscribe (the
//! seed article's second use of weak references).
//!
//! Run it with `cargo run --example events`.

use std::cell::RefCell;

use reap::{Gc, Heap, Trace, Weak, WeakFnMethod};

#[derive(Trace)]
struct Subscriber {
    name: String,
}

impl Subscriber {
    fn on_event(&self) -> String {
        format!("{} got the event", self.name)
    }
}

#[derive(Default)]
struct Dispatcher {
    handlers: RefCell<Vec<WeakFnMethod<Subscriber, String>>>,
}

impl Dispatcher {
    fn subscribe(&self, handler: WeakFnMethod<Subscriber, String>) {
        self.handlers.borrow_mut().push(handler);
    }

    fn emit(&self) {
        // Call the live handlers; forget the dead ones on the way.
        self.handlers.borrow_mut().retain(|h| match h.call() {
            Some(line) => {
                println!("  {line}");
                true
            }
            None => false,
        });
        println!("  ({} handlers left)", self.handlers.borrow().len());
    }
}

fn main() {
    let heap = Heap::new();
    let dispatcher = Dispatcher::default();
    let alice = heap.alloc(Subscriber {
        name: "alice".into(),
    });
    let bob = heap.alloc(Subscriber { name: "bob".into() });
    let bob_probe = Weak::new(&bob);
    dispatcher.subscribe(WeakFnMethod::new(&alice, Subscriber::on_event));
    dispatcher.subscribe(WeakFnMethod::new(&bob, Subscriber::on_event));
    println!("first event:");
    dispatcher.emit();
    drop(bob); // bob goes away without unsubscribing
    println!("bob freed: {}", !bob_probe.is_alive());
    println!("after bob left:");
    dispatcher.emit();
    println!(
        "strong handles to alice: {} (the dispatcher holds none)",
        Gc::strong_count(&alice)
    );
}

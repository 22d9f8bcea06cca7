//! The seed article's walk-through, line for line:
//!
//! ```python
//! import weakref
//!
//! class MyObject:
//!     def __del__(self):
//!         print("My Object has been garbage collected")
//!
//! obj = MyObject()
//! weak_ref = weakref.ref(obj)
//! del obj
//!
//! if weak_ref() is not None:
//!     print("Object still exists")
//! else:
//!     print("Object has been garbage collected")
//! ```
//!
//! Run it with `cargo run --release --example seed`; it prints what `python3` prints.

use reap::{Finalize, Gc, Heap, Trace, Weak};

#[derive(Trace)]
#[reap(finalize)]
struct MyObject;

impl Finalize for MyObject {
    fn finalize(_this: &Gc<Self>) {
        println!("My Object has been garbage collected");
    }
}

fn main() {
    let heap = Heap::new();
    let obj = heap.alloc(MyObject);
    let weak_ref = Weak::new(&obj);
    drop(obj);

    if weak_ref.upgrade().is_some() {
        println!("Object still exists");
    } else {
        println!("Object has been garbage collected");
    }
}

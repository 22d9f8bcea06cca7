//! A tree with strong child pointers and weak parent pointers is freed by reference counting
//! alone when its root goes: the collector finds nothing. The same tree with strong parent
//! pointers is a web of cycles that only the collector frees (the seed article's third use of
//! weak references).
//!
//! Run it with `cargo run --example graph`.

use std::cell::RefCell;

use reap::{Gc, Heap, Trace, Weak};

#[derive(Trace)]
struct Node {
    name: String,
    children: RefCell<Vec<Gc<Node>>>,
    weak_parent: RefCell<Option<Weak<Node>>>,
    strong_parent: RefCell<Option<Gc<Node>>>,
}

fn node(heap: &Heap, name: &str) -> Gc<Node> {
    heap.alloc(Node {
        name: name.into(),
        children: RefCell::new(Vec::new()),
        weak_parent: RefCell::new(None),
        strong_parent: RefCell::new(None),
    })
}

/// A root with `width` children, each with `width` grandchildren.
fn build(heap: &Heap, width: usize, strong_parents: bool) -> Gc<Node> {
    let root = node(heap, "root");
    for i in 0..width {
        let child = node(heap, &format!("c{i}"));
        for j in 0..width {
            let grandchild = node(heap, &format!("c{i}.{j}"));
            link(&child, &grandchild, strong_parents);
        }
        link(&root, &child, strong_parents);
    }
    root
}

fn link(parent: &Gc<Node>, child: &Gc<Node>, strong: bool) {
    if strong {
        *child.strong_parent.borrow_mut() = Some(parent.clone());
    } else {
        *child.weak_parent.borrow_mut() = Some(Weak::new(parent));
    }
    parent.children.borrow_mut().push(child.clone());
}

fn main() {
    let heap = Heap::new();
    heap.disable(); // only explicit collections, to see who frees what

    let tree = build(&heap, 3, false);
    let leaf = tree.children.borrow()[1].children.borrow()[2].clone();
    let parent = leaf
        .weak_parent
        .borrow()
        .as_ref()
        .unwrap()
        .upgrade()
        .unwrap();
    println!(
        "weak parents: {} is the parent of {}",
        parent.name, leaf.name
    );
    drop((parent, leaf));
    println!("objects before dropping the root: {}", heap.live_objects());
    drop(tree);
    println!("after dropping the root: {} objects", heap.live_objects());
    println!("collect found: {}", heap.collect(2));

    let tree = build(&heap, 3, true);
    println!("strong parents: {} objects", heap.live_objects());
    drop(tree);
    println!(
        "after dropping the root: {} objects (cycles)",
        heap.live_objects()
    );
    println!("collect found: {}", heap.collect(2));
    println!("left: {}", heap.live_objects());
}

//! A cache that needs no eviction: large decoded images kept in a `WeakValueMap`. A load hits
//! while some user still holds the image, and the entry goes by itself once the last user lets
//! go (the seed article's first use of weak references).
//!
//! Run it with `cargo run --example cache`.

use std::cell::Cell;

use reap::{Gc, Heap, Trace, WeakValueMap};

#[derive(Trace)]
struct Image {
    name: String,
    pixels: Vec<u8>,
}

struct Cache<'h> {
    heap: &'h Heap,
    images: WeakValueMap<String, Image>,
    decodes: Cell<u32>,
}

impl Cache<'_> {
    fn load(&self, name: &str) -> Gc<Image> {
        if let Some(hit) = self.images.get(&name.to_string()) {
            println!("{name}: cache hit");
            return hit;
        }
        self.decodes.set(self.decodes.get() + 1);
        println!("{name}: decoded");
        let image = self.heap.alloc(Image {
            name: name.to_string(),
            pixels: vec![0; 1 << 20],
        });
        self.images.insert(name.to_string(), &image);
        image
    }
}

fn main() {
    let heap = Heap::new();
    let cache = Cache {
        heap: &heap,
        images: WeakValueMap::new(),
        decodes: Cell::new(0),
    };
    let viewer = cache.load("cat.png");
    let thumbnail = cache.load("cat.png");
    println!(
        "same image: {}, {} bytes",
        Gc::ptr_eq(&viewer, &thumbnail),
        viewer.pixels.len()
    );
    let other = cache.load("dog.png");
    println!("cached: {}", cache.images.len());
    drop(viewer);
    println!("after the viewer closed: {} cached", cache.images.len());
    drop(thumbnail);
    println!("after the thumbnail closed: {} cached", cache.images.len());
    println!("{} is still cached", other.name);
    drop(other);
    println!("nothing held: {} cached", cache.images.len());
    let _again = cache.load("cat.png");
    println!("decodes: {}", cache.decodes.get());
}

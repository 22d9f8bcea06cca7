//! [`Views`]: from the type-erased handles of introspection (`get_objects`, `get_referents`,
//! `get_referrers`, `garbage`) to the embedder's own value type, with one conversion registered
//! per concrete type and found by its `TypeId`, instead of a chain of downcasts at each call.

use std::any::{Any, TypeId};

use crate::{AnyGc, Gc};

/// A conversion of one concrete type, type-erased.
type Conversion<V> = Box<dyn Fn(AnyGc) -> V>;

/// Conversions from [`AnyGc`] to an embedder's value type `V`, one per concrete Rust type.
///
/// An interpreter registers its object types once (at start-up, next to its type objects), then
/// turns whatever introspection returns into language values in one step. Objects of types that
/// were never registered (runtime-internal ones such as weak-reference objects, or Rust values the
/// language does not expose) give `None` and are skipped by [`Views::view_all`].
///
/// ```
/// use reap::{gc_coerce, Gc, Heap, Trace, Views};
/// use std::cell::RefCell;
///
/// trait Object { fn kind(&self) -> &'static str; }
/// #[derive(Trace)] struct List(RefCell<Vec<Gc<dyn Object>>>);
/// #[derive(Trace)] struct Dict;
/// impl Object for List { fn kind(&self) -> &'static str { "list" } }
/// impl Object for Dict { fn kind(&self) -> &'static str { "dict" } }
///
/// let mut views: Views<Gc<dyn Object>> = Views::new();
/// views.register(|g: Gc<List>| gc_coerce!(g => dyn Object));
/// views.register(|g: Gc<Dict>| gc_coerce!(g => dyn Object));
///
/// let heap = Heap::new();
/// let d: Gc<dyn Object> = gc_coerce!(heap.alloc(Dict) => dyn Object);
/// let l = heap.alloc(List(RefCell::new(vec![d.clone()])));
/// let kinds: Vec<_> = views
///     .view_all(heap.get_referents(&l))
///     .iter()
///     .map(|o| o.kind())
///     .collect();
/// assert_eq!(kinds, ["dict"]);
/// ```
pub struct Views<V> {
    by_type: hashbrown::HashMap<TypeId, Conversion<V>>,
}

impl<V> Default for Views<V> {
    fn default() -> Self {
        Views::new()
    }
}

impl<V> Views<V> {
    /// No conversions yet.
    pub fn new() -> Self {
        Views {
            by_type: hashbrown::HashMap::new(),
        }
    }

    /// Registers the conversion of objects whose value is a `T` (replacing an earlier one for
    /// `T`).
    pub fn register<T: Any>(&mut self, convert: impl Fn(Gc<T>) -> V + 'static) -> &mut Self {
        let erased: Conversion<V> = Box::new(move |any: AnyGc| match any.downcast::<T>() {
            Ok(t) => convert(t),
            // The map is keyed by `T`'s TypeId, and `view` looks up the object's own.
            Err(_) => unreachable!("a conversion is only called for its own type"),
        });
        self.by_type.insert(TypeId::of::<T>(), erased);
        self
    }

    /// Whether objects whose value is a `T` have a conversion.
    pub fn is_registered<T: Any>(&self) -> bool {
        self.by_type.contains_key(&TypeId::of::<T>())
    }

    /// The object as a `V`, or `None` if its type has no conversion.
    pub fn view(&self, obj: AnyGc) -> Option<V> {
        let convert = self.by_type.get(&Gc::value_type_id(&obj))?;
        Some(convert(obj))
    }

    /// Every object that has a conversion, as `V`s, in order; the others are skipped.
    pub fn view_all(&self, objs: impl IntoIterator<Item = AnyGc>) -> Vec<V> {
        objs.into_iter().filter_map(|o| self.view(o)).collect()
    }
}

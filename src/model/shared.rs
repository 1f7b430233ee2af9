//! [`Shared`]: a request's long lists (system parts, messages, tools), which clone in O(1)
//! and copy themselves only when something changes them; [`SharedMap`]: the same for the
//! wire fields an event or a part carries in its [`super::Extensions`].
//!
//! A coding agent's request carries its whole conversation and tool definitions, often
//! hundreds of KB, and llmux keeps a copy of the decoded request to tell whether a stage
//! changed it (see [`super::ClientBody`]): the client's bytes go out as they came only when
//! nothing did. With shared lists that copy costs a reference count, and comparing an
//! untouched list is comparing two pointers. A stage that takes a list mutably gets its own
//! copy first (`Arc::make_mut`), so the copy kept for comparison never changes under it
//! (nor the messages a large request leaves in `protocol::message_memo`).

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, LazyLock};

use serde_json::{Map, Value};

/// A list shared between clones until one of them is changed.
pub struct Shared<T>(Arc<Vec<T>>);

impl<T> Shared<T> {
    pub fn new(items: Vec<T>) -> Self {
        Self(Arc::new(items))
    }
}

impl<T> Shared<T> {
    /// Whether `a` and `b` are one list (not merely equal ones).
    pub fn same_list(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }

    /// A handle that knows this list without keeping it: the items go when the last clone
    /// does, but the handle keeps the list's place taken, so no later list is mistaken for
    /// it ([`Shared::is_known_by`]).
    pub fn known_by(&self) -> std::sync::Weak<Vec<T>> {
        Arc::downgrade(&self.0)
    }

    /// Whether `handle` is this very list's ([`Shared::known_by`]).
    pub fn is_known_by(&self, handle: &std::sync::Weak<Vec<T>>) -> bool {
        std::ptr::eq(handle.as_ptr(), Arc::as_ptr(&self.0))
    }
}

impl<T: Clone> Shared<T> {
    /// The list, copied only when another clone still shares it.
    pub fn into_vec(self) -> Vec<T> {
        Arc::unwrap_or_clone(self.0)
    }
}

impl<T> Default for Shared<T> {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T> Deref for Shared<T> {
    type Target = Vec<T>;

    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

/// Mutable access copies the list first when a clone shares it: changing one clone never
/// changes another.
impl<T: Clone> DerefMut for Shared<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        Arc::make_mut(&mut self.0)
    }
}

/// Equal when they are one list (no element compared), or their elements are equal.
impl<T: PartialEq> PartialEq for Shared<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || *self.0 == *other.0
    }
}

impl<T: PartialEq> PartialEq<Vec<T>> for Shared<T> {
    fn eq(&self, other: &Vec<T>) -> bool {
        *self.0 == *other
    }
}

impl<T: serde::Serialize> serde::Serialize for Shared<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Shared<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::deserialize(deserializer).map(Self::new)
    }
}

impl<T: fmt::Debug> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<T> From<Vec<T>> for Shared<T> {
    fn from(items: Vec<T>) -> Self {
        Self::new(items)
    }
}

impl<T> FromIterator<T> for Shared<T> {
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Self {
        Self::new(items.into_iter().collect())
    }
}

impl<'a, T> IntoIterator for &'a Shared<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<'a, T: Clone> IntoIterator for &'a mut Shared<T> {
    type Item = &'a mut T;
    type IntoIter = std::slice::IterMut<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.deref_mut().iter_mut()
    }
}

impl<T: Clone> IntoIterator for Shared<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;

    fn into_iter(self) -> Self::IntoIter {
        self.into_vec().into_iter()
    }
}

/// A JSON object shared between clones until one of them is changed. An empty one holds
/// nothing, so the many parts and events without extra fields allocate nothing.
///
/// Why: the same-protocol pass-through keeps a copy of an answer's events to compare with
/// what the client is about to get (`VerbatimSlot`), and the outcome keeps the usage; with
/// shared fields those copies cost a reference count and comparing them two pointers, where
/// cloning `serde_json`'s map hashed every key again (a tenth of the pass-through's cost).
#[derive(Clone, Default)]
pub struct SharedMap(Option<Arc<Map<String, Value>>>);

static EMPTY_MAP: LazyLock<Map<String, Value>> = LazyLock::new(Map::new);

impl SharedMap {
    /// The map, copied only when another clone still shares it.
    pub fn into_map(self) -> Map<String, Value> {
        self.0.map(Arc::unwrap_or_clone).unwrap_or_default()
    }
}

impl From<Map<String, Value>> for SharedMap {
    fn from(fields: Map<String, Value>) -> Self {
        Self((!fields.is_empty()).then(|| Arc::new(fields)))
    }
}

impl Deref for SharedMap {
    type Target = Map<String, Value>;

    fn deref(&self) -> &Map<String, Value> {
        match &self.0 {
            Some(fields) => fields,
            None => &EMPTY_MAP,
        }
    }
}

/// Mutable access copies the map first when a clone shares it, and makes an empty one.
impl DerefMut for SharedMap {
    fn deref_mut(&mut self) -> &mut Map<String, Value> {
        Arc::make_mut(self.0.get_or_insert_with(Default::default))
    }
}

/// Equal when they are one map, or their members are equal (an empty map equals none).
impl PartialEq for SharedMap {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => true,
            _ => **self == **other,
        }
    }
}

impl fmt::Debug for SharedMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl serde::Serialize for SharedMap {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for SharedMap {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Map::deserialize(deserializer).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::{Shared, SharedMap};

    #[test]
    fn clones_share_the_list_until_one_is_changed() {
        let first = Shared::new(vec![String::from("a"), String::from("b")]);
        let mut second = first.clone();
        assert!(std::ptr::eq(first.as_ptr(), second.as_ptr()), "one list");
        assert_eq!(first, second);

        second.push("c".into());
        assert_eq!(*first, ["a", "b"], "the other clone is unchanged");
        assert_eq!(*second, ["a", "b", "c"]);
        assert_ne!(first, second);

        // A changed copy that ends up equal compares equal, element by element.
        let mut third = first.clone();
        third[0] = "a".into();
        assert!(
            !std::ptr::eq(first.as_ptr(), third.as_ptr()),
            "copied when changed"
        );
        assert_eq!(first, third);
    }

    #[test]
    fn taking_the_list_out_copies_it_only_while_it_is_shared() {
        let first = Shared::new(vec![1, 2, 3]);
        let address = first.as_ptr();
        let kept = first.clone();
        let taken = first.into_vec();
        assert_ne!(taken.as_ptr(), address, "shared: copied");
        assert_eq!(taken, *kept);
        let alone = kept.into_vec();
        assert_eq!(alone.as_ptr(), address, "alone: moved");
        let collected: Shared<i32> = (1..=3).collect();
        assert_eq!(collected.into_iter().sum::<i32>(), 6);
    }

    #[test]
    fn a_shared_map_is_copied_only_when_changed_and_empty_holds_nothing() {
        let mut fields = serde_json::Map::new();
        fields.insert("system_fingerprint".into(), "fp".into());
        let first = SharedMap::from(fields);
        let mut second = first.clone();
        assert!(std::ptr::eq(&*first, &*second), "one map");

        second.insert("service_tier".into(), "default".into());
        assert_eq!(first.len(), 1, "the other clone is unchanged");
        assert_eq!(second.len(), 2);
        assert_ne!(first, second);
        second.remove("service_tier");
        assert_eq!(first, second, "equal members, two maps");

        let empty = SharedMap::default();
        assert!(empty.0.is_none() && SharedMap::from(serde_json::Map::new()).0.is_none());
        let mut emptied = first.clone();
        emptied.clear();
        assert_eq!(emptied, empty, "an emptied map equals none");
        assert_eq!(first.clone().into_map(), *first);
        assert_eq!(empty.into_map(), serde_json::Map::new());
        let round: SharedMap = serde_json::from_str(r#"{"a":1}"#).unwrap();
        assert_eq!(serde_json::to_string(&round).unwrap(), r#"{"a":1}"#);
    }
}

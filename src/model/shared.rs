//! [`Shared`]: a request's long lists (system parts, messages, tools), which clone in O(1)
//! and copy themselves only when something changes them.
//!
//! A coding agent's request carries its whole conversation and tool definitions, often
//! hundreds of KB, and llmux keeps a copy of the decoded request to tell whether a stage
//! changed it (see [`super::ClientBody`]): the client's bytes go out as they came only when
//! nothing did. With shared lists that copy costs a reference count, and comparing an
//! untouched list is comparing two pointers. A stage that takes a list mutably gets its own
//! copy first (`Arc::make_mut`), so the copy kept for comparison never changes under it.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

/// A list shared between clones until one of them is changed.
pub struct Shared<T>(Arc<Vec<T>>);

impl<T> Shared<T> {
    pub fn new(items: Vec<T>) -> Self {
        Self(Arc::new(items))
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

#[cfg(test)]
mod tests {
    use super::Shared;

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
}

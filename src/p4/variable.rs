//! [`SharedVar`]: one shared variable of a namespace.

use std::marker::PhantomData;

use super::Namespace;

/// A shared variable of a [`Namespace`], read and written as `T`.
#[derive(Debug, Clone)]
pub struct SharedVar<T> {
    namespace: Namespace,
    _type: PhantomData<fn() -> T>,
}

//! [`Scope`]: a named group of variables; `hub.scope("a")?.scope("b")?.variable("c")?` is the
//! subject `a.b.c`.

use std::sync::Arc;

use crate::hub::Hub;
use crate::name::{self, InvalidName};
use crate::variable::Variable;

/// A named group of variables. The same name on the same hub is always the same scope.
#[derive(Clone)]
pub struct Scope {
    hub: Hub,
    path: Arc<str>,
}

impl std::fmt::Debug for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope").field("path", &self.path).finish()
    }
}

impl Hub {
    /// The scope `name` (a plain name, or dotted for nested scopes). The same name always
    /// returns the same scope.
    ///
    /// # Errors
    /// [`InvalidName`] for an empty name, an empty token, a wildcard or whitespace.
    pub fn scope(&self, name: &str) -> Result<Scope, InvalidName> {
        name::validate("scope", name)?;
        Ok(Scope { path: self.scope_path(name), hub: self.clone() })
    }
}

impl Scope {
    /// The full dotted path of this scope (the subject prefix of its variables).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// A nested scope: `scope("a")?.scope("b")?` is path `a.b`.
    ///
    /// # Errors
    /// [`InvalidName`] as for [`Hub::scope`].
    pub fn scope(&self, name: &str) -> Result<Scope, InvalidName> {
        name::validate("scope", name)?;
        self.hub.scope(&name::join(&self.path, name))
    }

    /// The variable `name` in this scope: subject `<path>.<name>`.
    ///
    /// # Errors
    /// [`InvalidName`] as for [`Hub::variable`].
    pub fn variable(&self, name: &str) -> Result<Variable, InvalidName> {
        name::validate("variable", name)?;
        self.hub.variable(&name::join(&self.path, name))
    }

    /// The hub this scope belongs to.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// True when both handles are the same scope object.
    pub fn same_as(&self, other: &Scope) -> bool {
        Arc::ptr_eq(&self.path, &other.path)
    }
}

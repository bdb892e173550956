//! [`Scope`]: a named group of variables; `hub.scope("a")?.scope("b")?.variable("c")?` is the
//! subject `a.b.c`.

use std::sync::Arc;

use crate::hub::Hub;
use crate::name::{self, InvalidName};
use crate::variable::Variable;

#[derive(Debug)]
pub(crate) struct ScopeState {
    pub path: String,
}

/// A named group of variables. The same name on the same hub is always the same scope.
#[derive(Clone)]
pub struct Scope {
    hub: Hub,
    state: Arc<ScopeState>,
}

impl std::fmt::Debug for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope").field("path", &self.state.path).finish()
    }
}

impl Scope {
    pub(crate) fn new(hub: Hub, state: Arc<ScopeState>) -> Scope {
        Scope { hub, state }
    }

    /// The full dotted path of this scope (the subject prefix of its variables).
    pub fn path(&self) -> &str {
        &self.state.path
    }

    /// A nested scope: `scope("a")?.scope("b")?` is path `a.b`.
    pub fn scope(&self, name: &str) -> Result<Scope, InvalidName> {
        name::validate("scope", name)?;
        self.hub.scope(&name::join(&self.state.path, name))
    }

    /// The variable `name` in this scope: subject `<path>.<name>`.
    pub fn variable(&self, name: &str) -> Result<Variable, InvalidName> {
        name::validate("variable", name)?;
        self.hub.variable(&name::join(&self.state.path, name))
    }

    /// The hub this scope belongs to.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// True when both handles are the same scope object.
    pub fn same_as(&self, other: &Scope) -> bool {
        Arc::ptr_eq(&self.state, &other.state)
    }
}

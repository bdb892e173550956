//! The crate's one error style: every public error is a `thiserror` enum whose message says
//! what went wrong and what to do (in library terms: options and files, never CLI flags),
//! with a `*ErrorKind` derived from its variants by [`error_with_kind!`] (so the two never
//! drift apart) for callers that branch on the failure, as async-nats' `ErrorKind`s.
//! Both are `#[non_exhaustive]`.

/// Declares a `thiserror` error enum and its kind enum: one kind variant per error variant,
/// with the same name, and `fn kind(&self)`.
///
/// ```text
/// error_with_kind! {
///     /// Why X failed.
///     #[derive(Debug, thiserror::Error)]
///     pub enum XError => XErrorKind {
///         /// ...
///         #[error("...")]
///         Io { path: PathBuf, #[source] source: std::io::Error },
///     }
/// }
/// ```
macro_rules! error_with_kind {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident => $kind:ident {
            $(
                $(#[$vmeta:meta])*
                $variant:ident $({ $($fields:tt)* })? $(( $($tuple:tt)* ))?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[non_exhaustive]
        $vis enum $name {
            $( $(#[$vmeta])* $variant $({ $($fields)* })? $(( $($tuple)* ))? ),*
        }

        #[doc = concat!("What kind of [`", stringify!($name), "`] it is: one variant per error variant, for callers that branch on the failure.")]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        $vis enum $kind {
            $(
                #[doc = concat!("[`", stringify!($name), "::", stringify!($variant), "`]")]
                $variant
            ),*
        }

        impl $name {
            /// What kind of error this is.
            $vis fn kind(&self) -> $kind {
                match self {
                    $( $name::$variant { .. } => $kind::$variant ),*
                }
            }
        }
    };
}

pub(crate) use error_with_kind;

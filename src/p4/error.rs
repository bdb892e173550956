//! The error of every protocol-4 operation: [`Error`], whose kind is the reference's error
//! code ([`ErrorCode`], §10.2) — the crate's one error style (`Error<Kind>`).

use crate::wire::p4::ErrorCode;
use crate::wire::p4::canonical::{DecodeError, NonFiniteNumber, ValueRuleError};
use crate::wire::p4::headers::HeaderError;
use crate::wire::p4::live::LiveMessageError;
use crate::wire::p4::names::NameError;
use crate::wire::p4::record::RecordError;
use crate::wire::p4::report::ReportError;

/// A protocol-4 error: [`kind()`](crate::Error::kind) is the reference's code.
pub type Error = crate::error::Error<ErrorCode>;

macro_rules! from_wire {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::new(e.code()).with_detail(e.to_string())
            }
        }
    )*};
}

from_wire!(
    DecodeError,
    ValueRuleError,
    NonFiniteNumber,
    HeaderError,
    NameError,
    RecordError,
    ReportError,
    LiveMessageError
);

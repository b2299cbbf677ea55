//! What the policy list ([`for_each_policy!`](super::for_each_policy))
//! generates, and the parts of [`PolicyKind`](super::PolicyKind) and
//! [`PolicyParams`](super::PolicyParams) that are written once for all
//! policies (parsing, `Display`, errors).

use super::PolicyKind;
use std::fmt;
use std::str::FromStr;

/// Called with the policy list: defines `PolicyKind`, `PolicyParams` and the
/// store's `AnyPolicy` (one variant per policy, held by value).
macro_rules! define_policies {
    ([] $( $(#[$doc:meta])* $variant:ident($field:ident) = $name:literal => $ty:ty ),+ $(,)?) => {
        /// The policies a tier can be configured with (one per line of
        /// [`for_each_policy!`]).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum PolicyKind {
            $( $(#[$doc])* #[serde(rename = $name)] $variant, )+
        }

        impl PolicyKind {
            /// Every policy, in the order tables and sweeps list them.
            pub const ALL: &'static [PolicyKind] = &[$(PolicyKind::$variant),+];

            /// The name accepted on the command line and in configs.
            pub fn name(self) -> &'static str {
                match self {
                    $( PolicyKind::$variant => $name, )+
                }
            }
        }

        /// The tuning parameters of every policy, one field per policy (its
        /// key is the policy's name), each defaulting to the tuned values.
        /// A store uses the field of its own policy. In TOML:
        /// `[policy_params.gated-lru]` then `protected_share_64ths = 48`.
        #[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct PolicyParams {
            $(
                #[doc = concat!("Tuning of `", $name, "`.")]
                #[serde(rename = $name)]
                pub $field: <$ty as BuildPolicy>::Params,
            )+
        }

        impl PolicyParams {
            /// The first field of any policy's parameters that the policy
            /// cannot run with.
            pub fn check(&self) -> Result<(), InvalidPolicyParams> {
                $(
                    <$ty as BuildPolicy>::check_params(&self.$field).map_err(|e| {
                        InvalidPolicyParams {
                            policy: PolicyKind::$variant,
                            field: e.field,
                            reason: e.reason,
                        }
                    })?;
                )+
                Ok(())
            }
        }

        /// A tier's policy, held by value: the store matches on it once per
        /// batch call ([`with_policy!`]) and runs code monomorphised for the
        /// concrete policy.
        #[derive(Debug)]
        pub(crate) enum AnyPolicy {
            $( $variant($ty), )+
        }

        impl AnyPolicy {
            /// The policy `kind` for a tier of `capacity` slots, with its
            /// field of `params` (already checked).
            pub(crate) fn build(kind: PolicyKind, capacity: usize, params: &PolicyParams) -> Self {
                match kind {
                    $(
                        PolicyKind::$variant => {
                            AnyPolicy::$variant(<$ty as BuildPolicy>::build(capacity, &params.$field))
                        }
                    )+
                }
            }
        }
    };
}

/// Called with the policy list: a `match` on an `AnyPolicy` place binding
/// each concrete policy to one name (see [`with_policy!`]).
macro_rules! match_policy {
    ([($any:expr) $p:ident ($body:expr)]
     $( $(#[$doc:meta])* $variant:ident($field:ident) = $name:literal => $ty:ty ),+ $(,)?) => {
        match $any {
            $( $crate::policy::AnyPolicy::$variant($p) => $body, )+
        }
    };
}

/// `$body` with `$p` bound to the concrete policy held in `$any` (an
/// `AnyPolicy` place, `&` or `&mut`): the store's one dispatch per call.
/// `$body` is compiled once per policy.
macro_rules! with_policy {
    ($any:expr, $p:ident => $body:expr) => {
        for_each_policy!(match_policy, ($any), $p, ($body))
    };
}

/// Returned when a policy name is not known.
#[derive(Debug, thiserror::Error)]
#[error("unknown eviction policy `{name}` (known: {known})")]
pub struct UnknownPolicy {
    /// The name that was asked for.
    pub name: String,
    /// Comma-separated list of valid names.
    pub known: String,
}

impl FromStr for PolicyKind {
    type Err = UnknownPolicy;
    /// A policy by its name, case-insensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PolicyKind::ALL
            .iter()
            .copied()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownPolicy {
                name: s.to_string(),
                known: PolicyKind::ALL
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A policy parameter outside what the policy can run with, as found by
/// [`BuildPolicy::check_params`](super::BuildPolicy::check_params).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidParam {
    /// The field, as spelled in configs (`classes.window` for a nested one).
    pub field: &'static str,
    /// What the value must be.
    pub reason: &'static str,
}

impl InvalidParam {
    /// `Ok` if `ok`, else this error.
    pub(crate) fn unless(ok: bool, field: &'static str, reason: &'static str) -> Result<(), Self> {
        if ok {
            Ok(())
        } else {
            Err(InvalidParam { field, reason })
        }
    }
}

/// A field of [`PolicyParams`](super::PolicyParams) that its policy cannot
/// run with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("policy_params.{policy}.{field}: {reason}")]
pub struct InvalidPolicyParams {
    /// The policy whose parameters are wrong.
    pub policy: PolicyKind,
    /// The field, as spelled in configs.
    pub field: &'static str,
    /// What the value must be.
    pub reason: &'static str,
}

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
        /// The policies a tier can be configured with (one per line of the
        /// policy list, `for_each_policy!` in `policy/mod.rs`).
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
            /// Which policy this is.
            pub(crate) fn kind(&self) -> PolicyKind {
                match self {
                    $( AnyPolicy::$variant(_) => PolicyKind::$variant, )+
                }
            }

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

/// A policy's params struct: `serde` (unknown fields refused, missing ones
/// defaulted), `Copy`, a `Default` that is the tuned values and a
/// [`TuningParams::check`], all from one declaration per field:
/// `name: Type [valid range] = default`, or `name: Params = default` for a
/// nested params struct (checked field by field).
macro_rules! policy_params {
    ($(#[$doc:meta])* pub struct $name:ident {
        $( $(#[$fdoc:meta])* $field:ident : $ty:ty $([$range:expr])? = $default:expr ),* $(,)?
    }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            $( $(#[$fdoc])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $( $field: $default, )* }
            }
        }

        impl $crate::policy::TuningParams for $name {
            fn check(&self) -> Result<(), $crate::policy::InvalidParam> {
                $(
                    $crate::policy::registry::check_field!(self.$field, $field $([$range])?);
                )*
                Ok(())
            }
        }
    };
}

/// One field's check in [`policy_params!`]: its range, or its own fields.
macro_rules! check_field {
    ($value:expr, $field:ident [$range:expr]) => {
        $crate::policy::InvalidParam::unless(
            ($range).contains(&$value),
            stringify!($field),
            concat!("must be in ", stringify!($range)),
        )?
    };
    ($value:expr, $field:ident) => {
        $crate::policy::TuningParams::check(&$value).map_err(|e| e.within(stringify!($field)))?
    };
}
pub(crate) use check_field;

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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidParam {
    /// The field, as spelled in configs (`classes.window` for a nested one).
    pub field: String,
    /// What the value must be.
    pub reason: &'static str,
}

impl InvalidParam {
    /// `Ok` if `ok`, else this error.
    pub(crate) fn unless(ok: bool, field: &str, reason: &'static str) -> Result<(), Self> {
        if ok {
            Ok(())
        } else {
            Err(InvalidParam {
                field: field.to_string(),
                reason,
            })
        }
    }

    /// The same error for a field nested in `outer`.
    pub(crate) fn within(self, outer: &str) -> Self {
        InvalidParam {
            field: format!("{outer}.{}", self.field),
            ..self
        }
    }
}

/// A field of [`PolicyParams`](super::PolicyParams) that its policy cannot
/// run with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("policy_params.{policy}.{field}: {reason}")]
pub struct InvalidPolicyParams {
    /// The policy whose parameters are wrong.
    pub policy: PolicyKind,
    /// The field, as spelled in configs (`classes.window` for a nested one).
    pub field: String,
    /// What the value must be.
    pub reason: &'static str,
}

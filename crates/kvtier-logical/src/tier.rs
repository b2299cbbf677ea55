//! Tier identity.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A storage tier: G1 (GPU), G2 (pinned host), G3 (disk).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Device memory: the tier inference reads from.
    G1,
    /// Host memory (pinned when CUDA is present).
    G2,
    /// Local disk.
    G3,
}

impl Tier {
    /// All tiers, fastest first.
    pub const ALL: [Tier; 3] = [Tier::G1, Tier::G2, Tier::G3];

    /// Lower-case name (`g1`, `g2`, `g3`), as used in JSON and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Tier::G1 => "g1",
            Tier::G2 => "g2",
            Tier::G3 => "g3",
        }
    }

    /// Position in [`Tier::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

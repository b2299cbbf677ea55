//! Hit rates of every policy on the Mooncake synthetic trace (single tier,
//! reference replay semantics), pinned as regression tests, plus the default
//! policy's thresholds. `print_policy_table` (ignored) prints the full table
//! of `docs/policy-design-log.md`:
//! `cargo test --release -p kvtier-logical --test policy_hit_rates -- --ignored --nocapture`

mod common;

use common::trace;
use kvtier_logical::replay;
use kvtier_logical::workload::{
    agentic, multi_turn, scan_mix, zipf_prefixes, Agentic, MultiTurn, ScanMix, ZipfPrefixes,
};
use kvtier_logical::{BlockStore, PolicyKind, SequenceHash, StoreConfig, Tier};

fn hits(policy: PolicyKind, capacity: usize, requests: &[Vec<SequenceHash>]) -> (u64, u64) {
    let store = BlockStore::new(StoreConfig::new(Tier::G1, capacity).with_policy(policy)).unwrap();
    let stats = replay(&store, requests).unwrap();
    store.check_invariants().unwrap();
    (stats.hits, stats.blocks)
}

/// The generated workloads of `docs/policy-design-log.md` (seed 42, default configs).
fn workloads() -> Vec<(&'static str, Vec<Vec<SequenceHash>>)> {
    vec![
        ("zipf-prefixes", zipf_prefixes(42, &ZipfPrefixes::default())),
        ("multi-turn", multi_turn(42, &MultiTurn::default())),
        ("scan-mix", scan_mix(42, &ScanMix::default())),
        ("agentic", agentic(42, &Agentic::default())),
    ]
}

fn table(name: &str, requests: &[Vec<SequenceHash>], caps: &[usize]) {
    let blocks: usize = requests.iter().map(|r| r.len()).sum();
    println!("\n{name}: {} requests, {blocks} blocks", requests.len());
    print!("| policy |");
    for c in caps {
        print!(" {c} |");
    }
    println!();
    for &p in PolicyKind::ALL {
        print!("| {} |", p.name());
        for &c in caps {
            let (h, b) = hits(p, c, requests);
            print!(" {:.4} ({h}) |", h as f64 / b as f64);
        }
        println!();
    }
}

#[test]
#[ignore]
fn print_policy_table() {
    table(
        "mooncake synthetic",
        trace(),
        &[1000, 2000, 4000, 6000, 10_000, 20_000],
    );
    for (name, reqs) in workloads() {
        table(name, &reqs, &[500, 1000, 2000, 4000, 8000]);
    }
}

/// Exact hits (of 121,877 looked-up blocks) per policy at 2,000 and 6,000
/// blocks. Regression pins: a change to a policy that moves them must update
/// them (and `docs/policy-design-log.md`) on purpose.
const PINNED: &[(PolicyKind, u64, u64)] = &[
    (PolicyKind::Lru, 17_839, 38_027),
    (PolicyKind::PrefixLru, 17_839, 38_027),
    (PolicyKind::S3Fifo, 18_852, 40_186),
    (PolicyKind::TinyLfu, 13_194, 31_387),
    (PolicyKind::PrefixFreq, 18_912, 41_910),
    (PolicyKind::GatedLru, 18_426, 42_118),
    (PolicyKind::GatedArc, 18_714, 41_888),
    (PolicyKind::GatedDuel, 18_422, 41_987),
];

/// Exact hits at the sizes of host and disk tiers (16,000 and 32,000
/// blocks), for LRU (the reference) and the two gated policies: `gated-arc`
/// is the one for large tiers.
const PINNED_LARGE: &[(PolicyKind, u64, u64)] = &[
    (PolicyKind::Lru, 64_581, 76_554),
    (PolicyKind::GatedLru, 69_133, 76_566),
    (PolicyKind::GatedArc, 69_211, 76_566),
    (PolicyKind::GatedDuel, 68_811, 76_548),
];

/// Every size of the sweep tables (`docs/policies.md`): exact hits of LRU
/// (the reference) and `gated-duel` on the trace.
const SWEEP_SIZES: [usize; 8] = [1000, 2000, 4000, 6000, 10_000, 16_000, 32_000, 64_000];
const PINNED_SWEEP: &[(PolicyKind, [u64; 8])] = &[
    (
        PolicyKind::Lru,
        [
            10_252, 17_839, 28_577, 38_027, 51_669, 64_581, 76_554, 77_953,
        ],
    ),
    (
        PolicyKind::GatedDuel,
        [
            10_956, 18_422, 31_744, 41_987, 54_856, 68_811, 76_548, 77_953,
        ],
    ),
];

#[test]
fn pinned_hits_at_every_sweep_size() {
    for &(p, want) in PINNED_SWEEP {
        let got: Vec<u64> = SWEEP_SIZES.iter().map(|&c| hits(p, c, trace()).0).collect();
        assert_eq!(got, want, "{p} at {SWEEP_SIZES:?}");
    }
}

#[test]
fn pinned_hits_at_large_sizes() {
    let got: Vec<_> = PINNED_LARGE
        .iter()
        .map(|&(p, _, _)| (p, hits(p, 16_000, trace()).0, hits(p, 32_000, trace()).0))
        .collect();
    assert_eq!(got, PINNED_LARGE, "at 16,000 and 32,000");
}

/// `gated-arc` and `gated-duel` never fall more than 0.3 points of hit
/// rate below LRU on the trace and the generated workloads, at any size
/// tested.
#[test]
fn adaptive_policies_never_far_below_lru() {
    let mut sets = vec![("trace", trace().to_vec())];
    sets.extend(workloads());
    for (name, reqs) in &sets {
        for c in [500, 1000, 2000, 4000, 8000, 16_000, 32_000] {
            let (hl, b) = hits(PolicyKind::Lru, c, reqs);
            for p in [PolicyKind::GatedArc, PolicyKind::GatedDuel] {
                let (ha, _) = hits(p, c, reqs);
                let gap = (hl as f64 - ha as f64) / b as f64;
                assert!(gap <= 0.003, "{name} at {c}: {p} {ha} vs lru {hl}");
            }
        }
    }
}

#[test]
fn every_policy_is_pinned() {
    for &p in PolicyKind::ALL {
        assert!(PINNED.iter().any(|&(q, _, _)| q == p), "{p} has no pin");
    }
}

#[test]
fn pinned_hits_at_2000() {
    for &(p, h2000, _) in PINNED {
        assert_eq!(hits(p, 2000, trace()), (h2000, 121_877), "{p} at 2000");
    }
}

#[test]
fn pinned_hits_at_6000() {
    for &(p, _, h6000) in PINNED {
        assert_eq!(hits(p, 6000, trace()), (h6000, 121_877), "{p} at 6000");
    }
}

/// The default beats LRU at both sizes and is never far below it on the
/// generated workloads (at most 1 point of hit rate at any size tested).
#[test]
fn default_beats_lru() {
    let d = PolicyKind::default();
    for c in [2000, 6000] {
        let (hd, b) = hits(d, c, trace());
        let (hl, _) = hits(PolicyKind::Lru, c, trace());
        assert!(hd > hl, "{d} {hd} vs lru {hl} at {c}");
        assert!(hd as f64 / b as f64 > 0.15 || c != 2000);
        assert!(hd as f64 / b as f64 > 0.34 || c != 6000);
    }
    for (name, reqs) in workloads() {
        for c in [500, 1000, 2000, 4000, 8000] {
            let (hd, b) = hits(d, c, &reqs);
            let (hl, _) = hits(PolicyKind::Lru, c, &reqs);
            let gap = (hl as f64 - hd as f64) / b as f64;
            assert!(gap <= 0.01, "{name} at {c}: {d} {hd} vs lru {hl}");
        }
    }
}

/// The default against LRU only, at the sizes of the thresholds and of the
/// workload tables (quick check while changing the default):
/// `cargo test --release -p kvtier-logical --test policy_hit_rates default_vs_lru -- --ignored --nocapture`
#[test]
#[ignore]
fn default_vs_lru() {
    let d = PolicyKind::default();
    let mut sets = vec![("trace", trace().to_vec())];
    sets.extend(workloads());
    for (name, reqs) in &sets {
        let caps: &[usize] = if *name == "trace" {
            &[1000, 2000, 4000, 6000, 10_000, 20_000]
        } else {
            &[500, 1000, 2000, 4000, 8000]
        };
        print!("{name}:");
        for &c in caps {
            let (hd, b) = hits(d, c, reqs);
            let (hl, _) = hits(PolicyKind::Lru, c, reqs);
            print!(
                " {c}: {:.4} ({:+.2})",
                hd as f64 / b as f64,
                (hd as f64 - hl as f64) / b as f64 * 100.0
            );
        }
        println!();
    }
}

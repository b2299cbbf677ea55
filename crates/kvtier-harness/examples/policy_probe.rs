//! Hit rate of one eviction policy, with tuning given as JSON, on one tier
//! over several cache salts: how much of a policy's result depends on which
//! hashes a sampled mechanism (`gated-duel`'s duel) happens to see. Used for
//! the salt spreads and parameter probes in `docs/policies.md` and
//! `docs/policy-design-log.md`.
//!
//! ```sh
//! cargo run --release -p kvtier-harness --example policy_probe -- \
//!     <trace.jsonl | synthetic> <policy> <capacities> [params-json] [salts]
//! # e.g. the conversation trace, default tuning, the built-in salt and 0..3:
//! cargo run --release -p kvtier-harness --example policy_probe -- \
//!     conversation_trace.jsonl gated-duel 1000,16000 '{}' kvtier,0,1,2,3
//! ```
//!
//! `params-json` is a `PolicyParams` object (`{"gated-duel":
//! {"duel_sample_rate": 16}}`); a salt is a number or a name (hashed as the
//! config's `salt` is). Prints, per capacity, the hit rate for each salt,
//! their mean, and the best replay time.

use anyhow::{bail, Context, Result};
use kvtier_harness::trace::Trace;
use kvtier_logical::{
    BlockStore, CacheSalt, PolicyKind, PolicyParams, SingleTierReplay, StoreConfig, Tier,
};
use std::path::Path;
use std::time::Instant;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        bail!("usage: policy_probe <trace.jsonl | synthetic> <policy> <capacities> [params-json] [salts]");
    }
    let trace = if args[0] == "synthetic" {
        Trace::embedded()
    } else {
        Trace::from_file(Path::new(&args[0]))?
    };
    let policy: PolicyKind = args[1].parse().context("policy")?;
    let caps = args[2]
        .split(',')
        .map(|c| c.parse::<usize>().context("capacity"))
        .collect::<Result<Vec<_>>>()?;
    let params: PolicyParams =
        serde_json::from_str(args.get(3).map_or("{}", |s| s.as_str())).context("params-json")?;
    let salts: Vec<(String, CacheSalt)> = args
        .get(4)
        .map_or("kvtier", |s| s.as_str())
        .split(',')
        .map(|s| {
            let salt = s
                .parse()
                .map(CacheSalt)
                .unwrap_or_else(|_| CacheSalt::from_name(s));
            (s.to_string(), salt)
        })
        .collect();
    let hashed: Vec<_> = salts.iter().map(|(_, s)| trace.hashed(*s)).collect();
    for &cap in &caps {
        let mut rates = Vec::new();
        let mut best = f64::MAX;
        for h in &hashed {
            let store = BlockStore::new(
                StoreConfig::new(Tier::G1, cap)
                    .with_policy(policy)
                    .with_policy_params(params.clone()),
            )?;
            let mut r = SingleTierReplay::new(store);
            let t = Instant::now();
            for q in h.iter() {
                r.request(q)?;
            }
            best = best.min(t.elapsed().as_secs_f64());
            rates.push(r.stats().hit_rate());
        }
        let mean = rates.iter().sum::<f64>() / rates.len() as f64;
        let each: Vec<String> = salts
            .iter()
            .zip(&rates)
            .map(|((n, _), r)| format!("{n}={r:.4}"))
            .collect();
        println!(
            "{policy} {cap}: mean {mean:.4} [{}] best replay {:.2} ms",
            each.join(" "),
            best * 1e3
        );
    }
    Ok(())
}

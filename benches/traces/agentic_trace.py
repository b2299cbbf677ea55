#!/usr/bin/env python3
"""Generate a Mooncake-format JSONL trace of agentic coding sessions.

A held-out check for the eviction policies: traffic shaped like coding
agents (SWE-agent, IDE assistants) rather than chat. Blocks are 512 tokens,
as in Mooncake's traces; each line is one request with the block ids of its
whole prompt (`hash_ids`). Deterministic for a given seed.

Shape (every knob is an option):
- a few shared system prompts with tool definitions (30-60 blocks);
- sessions, `--open` of them interleaved at a time, each a task
  description (2-20 unique blocks) followed by steps; a step re-sends the
  whole context plus the model's last answer and the tool's output (1-8
  blocks, now and then a file read of 20-120);
- sub-agents: a step may fork a short-lived context from the system prompt
  plus a sub-task (its own steps), which ends and is never seen again;
- compaction: a context longer than `--compact-at` blocks is replaced by
  system prompt + a fresh summary (4-16 blocks), so its old prefix dies;
- retries: a step may be re-sent unchanged (a failed tool call, a
  regenerated answer);
- scheduling: a share `--recency` of steps goes to one of the few most
  recently active sessions, the rest to any open session.

Usage: agentic_trace.py [--requests N] [--seed S] [--open K] > trace.jsonl
"""

import argparse
import json
import random


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=12000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--open", type=int, default=24, help="sessions interleaved")
    ap.add_argument("--systems", type=int, default=3)
    ap.add_argument("--compact-at", type=int, default=200)
    ap.add_argument("--recency", type=float, default=0.5,
                    help="share of steps taken by a recently active session (else any open one)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    next_id = [0]

    def fresh(n):
        ids = list(range(next_id[0], next_id[0] + n))
        next_id[0] += n
        return ids

    systems = [fresh(rng.randint(30, 60)) for _ in range(args.systems)]

    def new_session():
        sys_prompt = systems[min(int(rng.expovariate(1.0)), args.systems - 1)]
        return {
            "ctx": sys_prompt + fresh(rng.randint(2, 20)),
            "sys": sys_prompt,
            "steps": rng.randint(5, 120),
            "sub": None,
        }

    sessions = [new_session() for _ in range(args.open)]
    t = 0
    out = []
    last = None
    while len(out) < args.requests:
        # Recently active sessions are more likely to step again.
        if rng.random() < args.recency:
            i = min(int(rng.expovariate(1 / 4)), args.open - 1)
        else:
            i = rng.randrange(args.open)
        s = sessions[i]
        sessions.insert(0, sessions.pop(i))
        if rng.random() < 0.03 and last is not None:
            ids = last  # retry of the last request, unchanged
        elif s["sub"] is not None:
            sub = s["sub"]
            ids = sub["ctx"]
            sub["ctx"] = sub["ctx"] + fresh(rng.randint(1, 6))
            sub["steps"] -= 1
            if sub["steps"] <= 0:
                s["sub"] = None
                s["ctx"] = s["ctx"] + fresh(rng.randint(1, 3))  # its result
        else:
            ids = s["ctx"]
            grow = rng.randint(1, 8)
            if rng.random() < 0.1:
                grow += rng.randint(20, 120)  # a file read
            s["ctx"] = s["ctx"] + fresh(grow)
            s["steps"] -= 1
            if rng.random() < 0.05:
                s["sub"] = {"ctx": s["sys"] + fresh(rng.randint(2, 10)),
                            "steps": rng.randint(2, 15)}
            if len(s["ctx"]) > args.compact_at:
                s["ctx"] = s["sys"] + fresh(rng.randint(4, 16))
            if s["steps"] <= 0:
                sessions[0] = new_session()
        last = ids
        out.append(ids)
        t += rng.randint(50, 900)
        print(json.dumps({"timestamp": t, "input_length": 512 * len(ids),
                          "output_length": rng.randint(50, 1500), "hash_ids": ids}))


if __name__ == "__main__":
    main()

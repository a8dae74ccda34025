//! The journal of effects: within one delivery, every effectful tool call that completed
//! (http other than GET/HEAD/OPTIONS, email, emit, llm) is recorded in the store with its
//! position, a hash of its request and its result, before the result reaches the plugin.
//!
//! A later attempt of the same delivery replays: its Nth effectful call, if it matches
//! the recorded Nth call (same tool and request hash), gets the recorded result and the
//! effect is not made again. The first call that differs ends the replay for the rest of
//! the attempt ("diverged at call N"); it and every later call run for real. A call with
//! no record (it failed before) runs for real without ending the replay. Failed calls are
//! never recorded, so a retry makes them again. What an attempt did with its journal is
//! noted on the attempt (see [`JournalNote`]).

use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::Tools;
use crate::config::manifest::JournalPolicy;
use crate::store::JournalEntry;
use crate::wit::agenthook::plugin::types::ToolError;

/// Effectful calls one delivery may journal; the next one is refused (`limited`) before
/// it has an effect.
pub const MAX_JOURNAL_CALLS: u32 = 1000;
/// Bytes of recorded results one delivery may keep; once reached, further effectful
/// calls are refused (`limited`) before they have an effect.
pub const MAX_JOURNAL_BYTES: usize = 16 << 20;

/// One delivery's journal as an attempt sees it: what earlier attempts recorded, and
/// where this attempt is.
#[derive(Debug)]
pub struct Journal {
    recorded: Vec<JournalEntry>,
    /// This attempt's number, recorded with each entry it makes.
    attempt: u32,
    policy: JournalPolicy,
    /// Effectful calls made so far in this attempt.
    seq: u32,
    /// False once a call differed from the record.
    replaying: bool,
    bytes: usize,
    note: JournalNote,
}

/// What an attempt did with its journal, readable after the call.
#[derive(Debug, Clone, Default)]
pub struct JournalNote(Arc<Mutex<Counts>>);

#[derive(Debug, Default)]
struct Counts {
    replayed: u32,
    recorded: u32,
    diverged_at: Option<u32>,
}

impl JournalNote {
    /// `diverged at call 2 (1 replayed, 2 recorded)`, `3 replayed`, …; None when the
    /// attempt made no journaled call.
    pub fn summary(&self) -> Option<String> {
        let c = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let counts = format!("{} replayed, {} recorded", c.replayed, c.recorded);
        match c.diverged_at {
            Some(n) => Some(format!("diverged at call {n} ({counts})")),
            None if c.replayed + c.recorded > 0 => Some(counts),
            None => None,
        }
    }
}

/// Where one effectful call stands: replayed from the record, or to be made.
pub enum Step {
    /// The recorded result of this call.
    Replay(serde_json::Value),
    /// Make the call; record it as call `seq`.
    Run { seq: u32 },
}

impl Journal {
    /// A journal for attempt `attempt`, holding what earlier attempts `recorded`.
    pub fn new(recorded: Vec<JournalEntry>, attempt: u32, policy: JournalPolicy) -> Journal {
        let bytes = recorded.iter().map(entry_bytes).sum();
        Journal {
            recorded,
            attempt,
            policy,
            seq: 0,
            replaying: true,
            bytes,
            note: JournalNote::default(),
        }
    }

    /// A handle on this attempt's counts.
    pub fn note(&self) -> JournalNote {
        self.note.clone()
    }

    pub fn policy(&self) -> &JournalPolicy {
        &self.policy
    }

    /// The next effectful call, with its tool and request hash: replay it or run it.
    pub fn step(&mut self, tool: &str, request_hash: &str) -> Result<Step, ToolError> {
        if self.seq >= MAX_JOURNAL_CALLS {
            return Err(ToolError::Limited(format!(
                "more than {MAX_JOURNAL_CALLS} effectful calls in one delivery (the journal's cap)"
            )));
        }
        self.seq += 1;
        let seq = self.seq;
        if self.replaying
            && let Some(entry) = self.recorded.iter().find(|e| e.seq == seq)
        {
            if entry.tool == tool && entry.request_hash == request_hash {
                self.counts().replayed += 1;
                return Ok(Step::Replay(entry.result.clone()));
            }
            self.replaying = false;
            self.counts().diverged_at = Some(seq);
        }
        if self.bytes >= MAX_JOURNAL_BYTES {
            return Err(ToolError::Limited(format!(
                "this delivery's journal holds {MAX_JOURNAL_BYTES} bytes of results (its cap); no more effectful calls"
            )));
        }
        Ok(Step::Run { seq })
    }

    /// The `Idempotency-Key` of effectful call `seq`: the delivery's key and the call's
    /// position, the same on every attempt, so a receiver recognises the repeat a crash
    /// between effect and record causes. Calls made after this attempt diverged are new
    /// operations at old positions: their key names the attempt too.
    pub fn idempotency_key(&self, delivery_key: &str, seq: u32) -> String {
        if self.replaying {
            format!("{delivery_key}:{seq}")
        } else {
            format!("{delivery_key}:{seq}:a{}", self.attempt)
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.note.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn entry_bytes(e: &JournalEntry) -> usize {
    e.result.to_string().len() + e.summary.len()
}

/// A request hash: SHA-256 over the tool name and the parts, each length-prefixed so
/// that moving bytes between parts changes the hash.
pub fn request_hash(tool: &str, parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for part in std::iter::once(tool.as_bytes()).chain(parts.iter().copied()) {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    hex::encode(h.finalize())
}

impl Tools {
    /// Record call `seq` of `tool` with its result, durably, before the result reaches
    /// the plugin. If the store cannot record it, the effect has happened all the same:
    /// the result is returned, and a retry makes the call again (with the same
    /// `Idempotency-Key` for http).
    pub(super) async fn journal_record(
        &mut self,
        seq: u32,
        tool: &str,
        request_hash: String,
        summary: String,
        result: serde_json::Value,
    ) {
        let Some(store) = self.store.clone() else {
            return;
        };
        let entry = JournalEntry {
            seq,
            tool: tool.to_string(),
            request_hash,
            summary,
            attempt: self.journal.attempt,
            recorded_at_ms: self.services.clock.now_ms(),
            result,
        };
        let bytes = entry_bytes(&entry);
        match store.journal_record(self.event, &self.plugin, entry).await {
            Ok(()) => {
                self.journal.bytes += bytes;
                self.journal.counts().recorded += 1;
            }
            Err(e) => tracing::warn!(
                plugin = &*self.plugin,
                event = self.event,
                seq,
                tool,
                error = %e,
                "cannot record a tool call in the journal; a retry makes it again"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u32, tool: &str, hash: &str) -> JournalEntry {
        JournalEntry {
            seq,
            tool: tool.into(),
            request_hash: hash.into(),
            summary: String::new(),
            attempt: 1,
            recorded_at_ms: 0,
            result: serde_json::json!(seq),
        }
    }

    fn replayed(step: Step) -> Option<serde_json::Value> {
        match step {
            Step::Replay(v) => Some(v),
            Step::Run { .. } => None,
        }
    }

    #[test]
    fn matching_calls_replay_a_gap_runs_and_the_first_difference_ends_replay() {
        let recorded = vec![
            entry(1, "http.fetch", "a"),
            entry(3, "email.send", "c"),
            entry(4, "events.emit", "d"),
            entry(5, "events.emit", "e"),
        ];
        let mut j = Journal::new(recorded, 2, JournalPolicy::default());
        assert_eq!(
            replayed(j.step("http.fetch", "a").unwrap()),
            Some(serde_json::json!(1))
        );
        // Call 2 failed last time (no record): it runs, and replay goes on.
        assert!(matches!(
            j.step("http.fetch", "b").unwrap(),
            Step::Run { seq: 2 }
        ));
        assert!(replayed(j.step("email.send", "c").unwrap()).is_some());
        // Call 4 differs: it runs, and so does everything after it, recorded or not.
        assert!(matches!(
            j.step("events.emit", "D").unwrap(),
            Step::Run { seq: 4 }
        ));
        assert!(matches!(
            j.step("events.emit", "e").unwrap(),
            Step::Run { seq: 5 }
        ));
        assert_eq!(
            j.note().summary().as_deref(),
            Some("diverged at call 4 (2 replayed, 0 recorded)")
        );
        // The same request through another tool is a different call.
        let mut j = Journal::new(
            vec![entry(1, "http.fetch", "a")],
            2,
            JournalPolicy::default(),
        );
        assert!(matches!(
            j.step("llm.chat", "a").unwrap(),
            Step::Run { seq: 1 }
        ));
        assert_eq!(
            j.note().summary().as_deref(),
            Some("diverged at call 1 (0 replayed, 0 recorded)")
        );
        assert_eq!(
            Journal::new(vec![], 1, JournalPolicy::default())
                .note()
                .summary(),
            None
        );
    }

    #[test]
    fn the_call_cap_is_enforced_before_the_effect() {
        let mut j = Journal::new(vec![], 1, JournalPolicy::default());
        for _ in 0..MAX_JOURNAL_CALLS {
            j.step("events.emit", "x").unwrap();
        }
        assert!(matches!(
            j.step("events.emit", "x"),
            Err(ToolError::Limited(_))
        ));
    }

    #[test]
    fn request_hashes_are_length_prefixed() {
        assert_ne!(
            request_hash("t", &[b"ab", b"c"]),
            request_hash("t", &[b"a", b"bc"])
        );
        assert_eq!(request_hash("t", &[b"x"]), request_hash("t", &[b"x"]));
        assert_ne!(request_hash("t", &[b"x"]), request_hash("u", &[b"x"]));
    }
}

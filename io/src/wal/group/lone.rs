//! When a lone client's records skip the hand-over to the WAL task.

/// Syncs in a row that must each have carried one request's records, with
/// nothing else proposed, before the proposer commits in place.
const LONE_SYNCS_MIN: u32 = 2;

/// Tells when the proposer should write and sync a round's records itself
/// (an in-place commit) instead of handing them to the WAL task.
///
/// Why: a client that waits for each acknowledgement before it asks again
/// gains nothing from group commit (its syncs carry one request each), and
/// a hand-over costs it two thread wake-ups per acknowledgement (to the
/// WAL task and back): in place, one client got about 20% more
/// acknowledgements per second on the benchmark machine. The proposer's
/// thread is then blocked for that one fdatasync, which nobody else is
/// waiting behind.
///
/// When: each of the last two syncs carried exactly one request's records,
/// nothing was proposed beyond them, and this round holds one request
/// again. Before it commits, the proposer yields once to its runtime, and
/// commits only if no other request arrived by then; any request arriving
/// by then, or during the in-place commit, sends commits back to the WAL
/// task, whose syncs overlap the proposer's work. Without the yield, on a
/// runtime with one thread, the blocked thread kept other clients from
/// asking, so each next request looked alone again: one request per
/// fdatasync, half the throughput of 32 clients in some runs.
///
/// Safety does not depend on it: an in-place commit happens only when the
/// log is idle (everything handed over is written and durable, no sync in
/// flight), and both ways use the same writer under one lock, so order
/// and the rule that nothing is acknowledged before its own fdatasync
/// hold on both.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LoneClient {
    /// Consecutive syncs that each carried one request's records, with no
    /// other request arriving while they ran.
    lone_syncs: u32,
    /// Requests whose records were proposed since the last sync returned.
    proposing: u32,
}

impl LoneClient {
    /// Whether a round of `requests` requests looks like a lone client's:
    /// then yield once, and commit in place if nobody else asked meanwhile.
    pub fn looks_alone(&self, requests: u32) -> bool {
        self.lone_syncs >= LONE_SYNCS_MIN && requests == 1
    }

    /// A round proposed the records of `requests` requests.
    pub fn proposed(&mut self, requests: u32) {
        self.proposing = self.proposing.saturating_add(requests);
    }

    /// A sync of the WAL task's returned; `nothing_after`: no record was
    /// proposed beyond it.
    pub fn synced(&mut self, nothing_after: bool) {
        let alone = self.proposing == 1 && nothing_after;
        self.lone_syncs = if alone {
            self.lone_syncs.saturating_add(1)
        } else {
            0
        };
        self.proposing = 0;
    }

    /// Another request arrived before an in-place commit began.
    pub fn interrupted(&mut self) {
        self.lone_syncs = 0;
    }

    /// An in-place commit ended; `others_waiting`: a request arrived
    /// during it.
    pub fn committed_in_place(&mut self, others_waiting: bool) {
        self.proposing = 0;
        self.lone_syncs = if others_waiting {
            0
        } else {
            self.lone_syncs.saturating_add(1)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_syncs_of_one_request_each_make_a_lone_client_and_a_second_request_ends_it() {
        let mut lone = LoneClient::default();
        for _ in 0..2 {
            assert!(!lone.looks_alone(1));
            lone.proposed(1);
            lone.synced(true);
        }
        assert!(lone.looks_alone(1));
        assert!(!lone.looks_alone(2), "a round of two requests is not alone");
        lone.proposed(1);
        lone.committed_in_place(false);
        assert!(lone.looks_alone(1));
        lone.committed_in_place(true);
        assert!(!lone.looks_alone(1), "a request arrived during the commit");
    }

    #[test]
    fn a_sync_with_two_requests_or_more_proposed_behind_it_is_not_alone() {
        let mut lone = LoneClient::default();
        for nothing_after in [true, false] {
            lone.proposed(1);
            lone.synced(nothing_after);
        }
        lone.proposed(1);
        lone.synced(true);
        assert!(!lone.looks_alone(1), "only one lone sync since the last");
        lone.proposed(2);
        lone.synced(true);
        lone.proposed(1);
        lone.synced(true);
        assert!(!lone.looks_alone(1));
        lone.proposed(1);
        lone.synced(true);
        assert!(lone.looks_alone(1));
        lone.interrupted();
        assert!(!lone.looks_alone(1));
    }
}
